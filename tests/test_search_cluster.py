"""Searches joined to a Ray cluster that the test starts itself (a head node plus a second node
process, on 127.0.0.1), and stops itself: only the processes it started, never another Ray."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "search_spaces" / "nasfpn_space.yaml")
RAY = str(Path(sys.executable).parent / "ray")


def _search_cmd(tmp_path, cache_dir, name, *extra):
    return [sys.executable, "-m", "nasfpn", "search", "--budget", "smoke", "--runs-dir", str(tmp_path),
            "--name", name, "--cache", str(cache_dir), "--no-progress", *extra]


def _records(run):
    path = run / "trials.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _start_node(args, env):
    """`ray start --block` in a session of its own: stopping the session stops this node only."""
    return subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop_node(node):
    """SIGKILL to the node's session (its agents would take tens of seconds to leave on their own)."""
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    node.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.killpg(node.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


@pytest.fixture
def ray_cluster():
    """A head node with no CPUs (so no trial can run on it) plus a second node with 2 CPUs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    common = ["--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    nodes = [_start_node(["--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
                          *common], env)]
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        nodes.append(_start_node(["--address", f"127.0.0.1:{port}", "--num-cpus", "2", *common], env))
        while time.time() < deadline:
            try:
                if len(_cluster_cpus(f"127.0.0.1:{port}", env)) == 2:
                    break
            except (ValueError, IndexError):  # not answering yet
                pass
            time.sleep(1)
        yield f"127.0.0.1:{port}", env
    finally:
        for node in reversed(nodes):
            _stop_node(node)


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
