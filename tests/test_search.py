"""Real searches on the smoke budget with an embedded Ray: every file of runs/NAME/, baselines in
the leaderboard, failing trials recorded, the Optuna study in PostgreSQL, clear errors."""

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from nasfpn.cli import main
from nasfpn.search.runner import connect_ray

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "search_spaces" / "nasfpn_space.yaml")


@pytest.fixture(scope="module", autouse=True)
def embedded_ray():
    import ray

    assert connect_ray(None, 2) == "embedded"  # the search's own embedded start
    yield
    ray.shutdown()


def _search(tmp_path, cache_dir, name, *extra):
    return main(["search", "--budget", "smoke", "--runs-dir", str(tmp_path), "--name", name,
                 "--cache", str(cache_dir), "--no-progress", *extra])


def test_search_writes_every_file_with_baselines(tmp_path, cache_dir):
    rc = _search(tmp_path, cache_dir, "e2e", "--space", SPACE, "--trials", "3", "--baselines", "fpn,bifpn",
                 "--seed", "1")
    assert rc == 0
    run = tmp_path / "e2e"
    for name in ("manifest.json", "study.db", "trials.jsonl", "leaderboard.md", "trials.csv", "pareto.png",
                 "progress.png", "best_cell.png", "best_genotype.yaml"):
        assert (run / name).exists(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["space"]["path"] == SPACE and len(manifest["space"]["sha256"]) == 64
    assert manifest["seeds"]["sampler"] == 1 and "ray" in manifest["versions"] and manifest["command"]
    board = (run / "leaderboard.md").read_text()
    assert "| fpn |" in board or "| fpn " in board
    assert "bifpn" in board and "Δ best baseline" in board
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 5 and set(trials["kind"]) == {"baseline", "search"}
    assert {"state", "duration_s", "error", "AP", "neck_flops"} <= set(trials.columns)
    assert (trials["duration_s"] > 0).all()  # early-stopped trials report how long they ran too
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert all(r["duration"] is not None for r in records)
    assert any(c.startswith("param:cell.nodes[0].combine") for c in trials.columns)
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{run / 'study.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 3
    assert main(["report", str(run)]) == 0
    assert main(["export", str(run), "--format", "py", "--out", str(tmp_path / "best.py")]) == 0


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, cache_dir):
    # half of this space builds a lateral without a conv: 64/128/256 backbone widths cannot become 16
    space = tmp_path / "fragile.yaml"
    space.write_text((ROOT / "search_spaces" / "nasfpn_space.yaml").read_text()
                     .replace("channels: 256", "channels: 16")
                     .replace("  lateral: [conv1x1, bn]", "  lateral: {choice: [[conv1x1, bn], [bn]]}")
                     .replace("lateral_when: channels_differ", "lateral_when: always"))
    rc = _search(tmp_path, cache_dir, "fragile", "--space", str(space), "--trials", "4", "--baselines", "none",
                 "--sampler", "random", "--no-asha")
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "fragile" / "trials.jsonl").read_text().splitlines()]
    states = [r["state"] for r in records]
    assert len(records) == 4 and "failed" in states and "complete" in states
    failed = next(r for r in records if r["state"] == "failed")
    assert "NeckBuildError" in failed["error"] and "lateral" in failed["error"]
    study = optuna.load_study(study_name="fragile", storage=f"sqlite:///{tmp_path / 'fragile' / 'study.db'}")
    assert optuna.trial.TrialState.FAIL in {t.state for t in study.trials}


def test_unreachable_cluster_address_is_one_clear_line(tmp_path, cache_dir, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    import ray

    ray.shutdown()  # joining a cluster needs a driver that is not already connected
    try:
        start = time.time()
        rc = _search(tmp_path, cache_dir, "nowhere", "--space", SPACE, "--trials", "1",
                     "--address", f"127.0.0.1:{port}")
        err = capsys.readouterr().err
        assert rc == 2 and f"127.0.0.1:{port}" in err and "cannot reach" in err and "Traceback" not in err
        assert time.time() - start < 30
    finally:
        connect_ray(None, 2)


def test_existing_run_and_bad_options_exit_2(tmp_path, cache_dir, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "manifest.json").write_text("{}")
    assert _search(tmp_path, cache_dir, "taken", "--space", SPACE, "--trials", "1") == 2
    assert "--resume" in capsys.readouterr().err
    assert _search(tmp_path, cache_dir, "x", "--space", SPACE, "--sampler", "nsga2") == 2
    assert "ap,flops" in capsys.readouterr().err
    assert _search(tmp_path, cache_dir, "y", "--space", SPACE, "--baselines", "fpm") == 2
    assert "did you mean 'fpn'" in capsys.readouterr().err


def _initdb() -> str | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return found


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (.ci/run installs Debian's postgresql), or the
    server named by $NASFPN_TEST_POSTGRES."""
    if os.environ.get("NASFPN_TEST_POSTGRES"):
        yield os.environ["NASFPN_TEST_POSTGRES"]
        return
    initdb = _initdb()
    if initdb is None:
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs them)")
    bindir = Path(initdb).resolve().parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="nasfpn-pg-"))
    if as_user:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "nasfpn"], **run)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w",
                    "-o", f"-p {port} -h 127.0.0.1 -k {data}", "start"], **run)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "nasfpn",
                        "nasfpn"], **run)
        yield f"postgresql+psycopg2://nasfpn@127.0.0.1:{port}/nasfpn"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_study_persists_to_postgresql(tmp_path, cache_dir, postgres_url):
    rc = _search(tmp_path, cache_dir, "pg", "--space", SPACE, "--trials", "2", "--baselines", "none",
                 "--storage", postgres_url)
    assert rc == 0
    assert not (tmp_path / "pg" / "study.db").exists()
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert len([t for t in study.trials if t.state.is_finished()]) >= 2
    manifest = json.loads((tmp_path / "pg" / "manifest.json").read_text())
    assert manifest["storage"].startswith("postgresql")
