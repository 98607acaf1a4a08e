"""Searches as separate processes, killed at several moments (SIGINT or SIGKILL during a trial,
SIGKILL while the report is written) and resumed: no completed trial lost or trained again, the
study and the records agree, the leaderboard complete. While they run, the embedded Ray listens
on 127.0.0.1 only, and none of its processes outlives a driver killed with SIGKILL for long."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest

from nasfpn.search.reaper import ray_processes

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "search_spaces" / "nasfpn_space.yaml")
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
TRIALS, BASELINES = 4, ["fpn"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _search_cmd(tmp_path, cache_dir, name, *extra):
    return [sys.executable, "-m", "nasfpn", "search", "--budget", "smoke", "--runs-dir", str(tmp_path),
            "--name", name, "--cache", str(cache_dir), "--no-progress", *extra]


def _records(run):
    path = run / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


def _result_lines(run, trial_id):
    """Results Tune wrote for a trial (Tune writes them late: a SIGKILL can leave none)."""
    path = run / "tune" / f"trial_{trial_id}" / "result.json"
    return len(path.read_text().splitlines()) if path.exists() else None


def _in_a_trial(run):
    """A sampled trial is in flight: asked from the study, handed to Tune, not recorded yet."""
    records = _records(run)
    if not 2 <= len(records) < TRIALS + len(BASELINES) - 1 or not (run / "study.db").exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{run / 'study.db'}?mode=ro", uri=True)) as db:
        try:
            running = {n for (n,) in db.execute("SELECT number FROM trials WHERE state = 'RUNNING'")}
        except sqlite3.OperationalError:  # being written
            return False
    return bool(running - {r["number"] for r in records})


def _writing_the_report(run):
    return len(_records(run)) == TRIALS + len(BASELINES) and (run / "leaderboard.md").exists()


MOMENTS = {
    "sigkill_during_a_trial": (signal.SIGKILL, _in_a_trial),
    "sigint_during_a_trial": (signal.SIGINT, _in_a_trial),
    "sigkill_while_writing_the_report": (signal.SIGKILL, _writing_the_report),
}


def _listening(procs):
    addresses = set()
    for proc in procs:
        try:
            addresses |= {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return addresses


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_search_killed_at_any_moment_resumes_without_losing_or_rerunning_a_trial(tmp_path, cache_dir, moment):
    sig, ready = MOMENTS[moment]
    run = tmp_path / "killed"
    first = subprocess.Popen(_search_cmd(tmp_path, cache_dir, "killed", "--space", SPACE, "--trials", str(TRIALS),
                                         "--baselines", ",".join(BASELINES), "--concurrency", "1", "--cpus", "2"),
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not ready(run) and time.time() < deadline and first.poll() is None:
        time.sleep(0.01)
    assert first.poll() is None, "the search ended before the moment came:\n" + first.stdout.read()
    driver = psutil.Process(first.pid)
    family = ray_processes(driver)
    assert {p.name() for p in family.values()} >= {"gcs_server", "raylet"}
    listening = _listening([driver, *family.values()])
    assert listening and listening <= LOOPBACK, listening  # nothing reachable from the network
    before = {r["trial_id"]: r for r in _records(run)}
    first.send_signal(sig)
    out, _ = first.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert first.returncode == 130 and "--resume" in out, out
    else:
        assert first.returncode == -signal.SIGKILL
        gone = time.time() + 20
        while time.time() < gone and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                         for p in family.values()):
            time.sleep(0.2)
        assert not [p.name() for p in family.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    lines_before = {tid: _result_lines(run, tid) for tid in before}

    done = subprocess.run([sys.executable, "-m", "nasfpn", "search", "--resume", str(run), "--no-progress"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(run)
    assert len(records) == len({r["trial_id"] for r in records}) == TRIALS + len(BASELINES)
    assert sorted(r["name"] for r in records if r["kind"] == "baseline") == BASELINES
    numbers = [r["number"] for r in records if r["kind"] == "search"]
    assert len(numbers) == len(set(numbers)) == TRIALS
    for trial_id, record in before.items():  # nothing lost, nothing trained again
        assert next(r for r in records if r["trial_id"] == trial_id) == record
        if lines_before[trial_id] is not None:
            assert _result_lines(run, trial_id) == lines_before[trial_id]
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{run / 'study.db'}")
    states = {t.number: t.state for t in study.trials}
    assert optuna.trial.TrialState.RUNNING not in states.values()
    told = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
            "failed": optuna.trial.TrialState.FAIL}
    assert all(states[r["number"]] == told[r["state"]] for r in records if r["kind"] == "search")
    board = (run / "leaderboard.md").read_text()
    assert all(f"| {r['name']}" in board for r in records if r["state"] == "complete")
    assert (run / "best_cell.png").exists() or not any(r["kind"] == "search" and r["state"] == "complete"
                                                       for r in records)


def test_resume_never_unpickles_what_a_run_directory_holds(tmp_path, cache_dir):
    """A crafted pickle in the place of Tune's state or a searcher checkpoint is never loaded."""
    run = tmp_path / "crafted"
    done = subprocess.run(_search_cmd(tmp_path, cache_dir, "crafted", "--space", SPACE, "--trials", "1",
                                      "--baselines", "none"), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    marker = tmp_path / "code-ran"
    payload = ("import os\nclass Evil:\n    def __reduce__(self):\n"
               f"        return (os.system, ('touch {marker}',))\n")
    maker = payload + "import pickle, sys\nfor p in sys.argv[1:]:\n    open(p, 'wb').write(pickle.dumps(Evil()))\n"
    subprocess.run([sys.executable, "-c", maker, str(run / "tune" / "tuner.pkl"),
                    str(run / "tune" / "searcher-state-2026-01-01_00-00-00.pkl"), str(run / "searcher-state.pkl")],
                   check=True)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["args"]["trials"] = 2  # leave work to resume
    (run / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run([sys.executable, "-m", "nasfpn", "search", "--resume", str(run), "--no-progress"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_records(run)) == 2
    assert not marker.exists()
