"""Searches as separate processes: interrupted and resumed, and joined to a Ray cluster that the
test starts itself (a head node plus a second node process, on 127.0.0.1)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "search_spaces" / "nasfpn_space.yaml")
RAY = str(Path(sys.executable).parent / "ray")


def _search_cmd(tmp_path, cache_dir, name, *extra):
    return [sys.executable, "-m", "nasfpn", "search", "--budget", "smoke", "--runs-dir", str(tmp_path),
            "--name", name, "--cache", str(cache_dir), "--no-progress", *extra]


def _records(run):
    path = run / "trials.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _result_lines(run, trial_id):
    return len((run / "tune" / f"trial_{trial_id}" / "result.json").read_text().splitlines())


def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path, cache_dir):
    run = tmp_path / "resumable"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(_search_cmd(tmp_path, cache_dir, "resumable", "--space", SPACE, "--trials", "5",
                                         "--baselines", "fpn", "--concurrency", "1", "--cpus", "2"),
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while len(_records(run)) < 3 and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
    assert len(_records(run)) >= 3, first.stdout.read() if first.poll() is not None else "timed out"
    first.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out
    assert "--resume" in out
    before = {r["trial_id"]: _result_lines(run, r["trial_id"]) for r in _records(run)}
    assert len(before) < 6

    done = subprocess.run([sys.executable, "-m", "nasfpn", "search", "--resume", str(run), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(run)
    assert len({r["trial_id"] for r in records}) == 6  # 5 sampled + 1 baseline, each once
    for trial_id, lines in before.items():
        assert _result_lines(run, trial_id) == lines  # a finished trial was not run again
    study = optuna.load_study(study_name="resumable", storage=f"sqlite:///{run / 'study.db'}")
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.fixture
def ray_cluster():
    """`ray start --head` with no CPUs (so no trial can run on it) plus a second node with 2 CPUs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    common = ["--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard",
                    "false", *common], env=env, check=True, capture_output=True, timeout=120)
    try:
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def _cluster_cpus(address, env):
    """{node id: CPUs} of the cluster's live nodes, asked from a separate driver."""
    nodes = subprocess.run(
        [sys.executable, "-c", "import json, ray; ray.init(address=%r, logging_level='ERROR'); "
         "print(json.dumps({n['NodeID']: n['Resources'].get('CPU', 0) for n in ray.nodes() if n['Alive']}))"
         % address], env=env, capture_output=True, text=True, timeout=120)
    return json.loads(nodes.stdout.strip().splitlines()[-1])


def test_search_joins_a_ray_cluster_and_runs_trials_there(tmp_path, cache_dir, ray_cluster):
    address, env = ray_cluster
    done = subprocess.run(_search_cmd(tmp_path, cache_dir, "cluster", "--space", SPACE, "--trials", "2",
                                      "--baselines", "fpn", "--address", address),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cpus = _cluster_cpus(address, env)
    worker = [node for node, n in cpus.items() if n > 0]
    assert len(cpus) == 2 and len(worker) == 1
    records = _records(tmp_path / "cluster")
    assert len(records) == 3 and all(r["state"] == "complete" for r in records)
    assert {r["node_id"] for r in records} == set(worker)  # every trial ran on the second node


def test_embedded_search_starts_its_own_ray_beside_a_running_cluster(tmp_path, cache_dir, ray_cluster):
    """`ray start` (or a crashed run) leaves /tmp/ray/ray_current_cluster pointing at a live
    instance, which a plain ray.init() joins; without --address the search must not."""
    address, cluster_env = ray_cluster
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(_search_cmd(tmp_path, cache_dir, "beside", "--space", SPACE, "--trials", "1",
                                      "--baselines", "fpn", "--cpus", "2"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(tmp_path / "beside")
    assert len(records) == 2 and all(r["state"] == "complete" for r in records)
    assert not {r["node_id"] for r in records} & set(_cluster_cpus(address, cluster_env))
