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
from nasfpn.search.cluster import connect_ray
from nasfpn.search.store import read_trials

pytestmark = [pytest.mark.slow, pytest.mark.ray]

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
    assert manifest["space"]["source"] == SPACE and len(manifest["space"]["sha256"]) == 64
    assert (run / manifest["space"]["file"]).read_text() == Path(SPACE).read_text()  # the run's own copy
    assert str(run.resolve()) not in (run / "manifest.json").read_text()  # nothing points into the run
    assert manifest["seeds"]["sampler"] == 1 and "ray" in manifest["versions"] and manifest["command"]
    board = (run / "leaderboard.md").read_text()
    assert "| fpn |" in board or "| fpn " in board
    assert "bifpn" in board and "Δ best baseline" in board
    assert "## Checklist" in board and "sampler `tpe` (seed 1)" in board and "CPU-hours" in board
    assert "budget `smoke` (fp32, fcos head)" in board and "confirmation at the reference budget: none yet" in board
    promoted = [json.loads(line) for line in (run / "promoted.jsonl").read_text().splitlines()]
    assert promoted[0]["name"] in ("fpn", "bifpn") and len(promoted) >= 2  # the best baseline, the survivors
    assert "trained again with 4x the steps" in board
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
        assert not (tmp_path / "nowhere").exists()  # a start that fails writes nothing
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


@pytest.mark.postgres
def test_study_persists_to_postgresql(tmp_path, cache_dir, postgres_url):
    rc = _search(tmp_path, cache_dir, "pg", "--space", SPACE, "--trials", "2", "--baselines", "none",
                 "--storage", postgres_url)
    assert rc == 0
    assert not (tmp_path / "pg" / "study.db").exists()
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert len([t for t in study.trials if t.state.is_finished()]) >= 2
    manifest = json.loads((tmp_path / "pg" / "manifest.json").read_text())
    assert manifest["storage"].startswith("postgresql")


def _secrets_in(folder: Path, *secrets: str) -> list[str]:
    """Files under `folder` (Tune's pickles and logs included) that hold any of the secrets."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and any(secret.encode() in path.read_bytes() for secret in secrets):
            found.append(str(path.relative_to(folder)))
    return found


def test_no_secret_is_written_and_resume_asks_for_the_storage_again(tmp_path, cache_dir, postgres_url, capsys,
                                                                     monkeypatch):
    host = postgres_url.split("@", 1)[1]  # the test server trusts 127.0.0.1: any password connects
    by_netloc = f"postgresql+psycopg2://nasfpn:Pw-in-netloc-1@{host}"
    by_query = f"postgresql+psycopg2://nasfpn@{host}?password=Pw-in-query-2"
    for name, url in (("netloc", by_netloc), ("query", by_query)):
        assert _search(tmp_path, cache_dir, name, "--space", SPACE, "--trials", "1", "--baselines", "none",
                       "--storage", url) == 0
        assert _secrets_in(tmp_path / name, "Pw-in-netloc-1", "Pw-in-query-2") == []
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["storage"] in (f"postgresql+psycopg2://nasfpn:***@{host}",
                                       f"postgresql+psycopg2://nasfpn@{host}?password=***")
        assert any("***" in arg for arg in manifest["command"]) or "--storage" not in manifest["command"]
    capsys.readouterr()
    assert main(["search", "--resume", str(tmp_path / "netloc"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NASFPN_STORAGE" in err and "nasfpn:***@" in err
    monkeypatch.setenv("NASFPN_STORAGE", by_query)  # another URL than the run's: refused
    assert main(["search", "--resume", str(tmp_path / "netloc"), "--no-progress"]) == 2
    assert "this run's study lives in" in capsys.readouterr().err
    monkeypatch.setenv("NASFPN_STORAGE", by_netloc)
    assert main(["search", "--resume", str(tmp_path / "netloc"), "--no-progress"]) == 0
    assert _secrets_in(tmp_path / "netloc", "Pw-in-netloc-1") == []


def _finished_run(tmp_path, cache_dir, name, trials=2):
    assert _search(tmp_path, cache_dir, name, "--space", SPACE, "--trials", str(trials), "--baselines", "fpn",
                   "--no-asha") == 0
    return tmp_path / name


def _study_size(run: Path, name: str) -> int:
    return len(optuna.load_study(study_name=name, storage=f"sqlite:///{run / 'study.db'}").trials)


def test_a_copied_run_directory_resumes_into_its_own_study(tmp_path, cache_dir):
    original = _finished_run(tmp_path / "a", cache_dir, "orig")
    copy = tmp_path / "b" / "copy"
    shutil.copytree(original, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["args"]["trials"] = 3  # one more sampled trial to train
    (copy / "manifest.json").write_text(json.dumps(manifest))
    before = _study_size(original, "orig")
    assert main(["search", "--resume", str(copy), "--no-progress"]) == 0
    assert _study_size(original, "orig") == before  # the original is untouched
    assert _study_size(copy, "orig") == before + 1    # the copy keeps the study name it started with
    assert len((copy / "trials.jsonl").read_text().splitlines()) == 4
    assert len((original / "trials.jsonl").read_text().splitlines()) == 3


def test_a_torn_or_garbage_trial_line_is_skipped_and_named(tmp_path, cache_dir, capsys):
    run = _finished_run(tmp_path, cache_dir, "torn")
    lines = (run / "trials.jsonl").read_text().splitlines()
    (run / "trials.jsonl").write_text("\n".join([lines[0], "garbage {", *lines[1:]]) + "\n" + lines[-1][:40])
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {run / 'trials.jsonl'}:5: the last line is incomplete (the run was killed while "
                   "writing it); the complete trials are reported",
                   f"warning: {run / 'trials.jsonl'}: 1 unreadable line(s) skipped (lines 2)"]
    board = (run / "leaderboard.md").read_text()
    assert board.startswith("Trials: 3 finished") and "| fpn |" in board
    assert main(["export", str(run), "--format", "yaml", "--out", str(tmp_path / "best.yaml")]) == 0
    assert main(["search", "--resume", str(run), "--no-progress"]) == 0  # nothing left: reports again


def test_a_damaged_manifest_or_study_is_one_line_naming_the_file(tmp_path, cache_dir, capsys):
    run = _finished_run(tmp_path, cache_dir, "damaged")
    good = (run / "manifest.json").read_text()
    (run / "manifest.json").write_text(good[: len(good) // 2])
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'manifest.json'}: damaged, not valid JSON" in err
    tampered = json.loads(good)
    tampered["budget"]["steps"] = "enormous"  # the budget a resumed run trains on is its manifest's
    (run / "manifest.json").write_text(json.dumps(tampered))
    assert main(["search", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{run / 'manifest.json'}: steps: expected an integer in 1..100000000, got 'enormous'" in err
    (run / "manifest.json").write_text(good)
    (run / "study.db").write_bytes(b"this is not a database" * 100)
    assert main(["search", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'study.db'}: cannot open the Optuna study" in err


def test_a_start_that_fails_writes_nothing_and_the_name_stays_free(tmp_path, cache_dir, capsys):
    import torch

    failing = [(["--cpus-per-trial", "100"], "--cpus-per-trial 100: no node of the Ray cluster has that many CPUs"),
               (["--data", f"coco:{tmp_path / 'no-such-coco'}"], "no such directory")]
    if not torch.cuda.is_available():
        failing.append((["--gpus-per-trial", "1"], "--gpus-per-trial 1: the Ray cluster has no GPU"))
    for extra, message in failing:
        assert _search(tmp_path, cache_dir, "retry", "--space", SPACE, "--trials", "1", *extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "retry").exists()
    assert _search(tmp_path, cache_dir, "../escape", "--space", SPACE) == 2
    assert "--name '../escape': use letters, digits" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []



def test_preparation_runs_in_a_task_holding_a_trials_resources(cache_dir):
    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.session import SessionSpec
    from nasfpn.search.cluster import prepare_where_trials_run
    from nasfpn.search.errors import SearchError

    spec = SessionSpec("synthetic", read_budget("smoke"), cache=str(cache_dir))
    prepared = prepare_where_trials_run(spec, cpus_per_trial=1, gpus_per_trial=0, device="cpu")
    assert prepared["feature_source"] == "disk cache" and prepared["precision"] == "fp32"
    assert prepared["fingerprint"] == spec.open("cpu").backbone_fingerprint
    broken = SessionSpec("synthetic", read_budget("smoke"), cache=str(cache_dir / "not-a-dir" / "\0"))
    with pytest.raises(SearchError, match="preparing the proxy on a cpu worker failed") as err:
        prepare_where_trials_run(broken, cpus_per_trial=1, gpus_per_trial=0, device="cpu")
    assert "\n" not in str(err.value)


def test_confirm_retrains_the_top_cells_and_best_baselines_and_resumes(tmp_path, cache_dir, capsys):
    assert _search(tmp_path, cache_dir, "conf", "--space", SPACE, "--trials", "2", "--baselines", "fpn,bifpn",
                   "--no-asha") == 0
    run = tmp_path / "conf"
    args = ["confirm", str(run), "--budget", "smoke", "--seeds", "2", "--top", "1", "--baselines", "best:1,pafpn",
            "--cache", str(cache_dir), "--no-progress"]
    assert main(args) == 0
    out = run / "confirm"
    md = (out / "confirm.md").read_text()
    assert "budget smoke (fcos head), 2 seed(s)" in md and ("beat the hand-designed necks" in md)
    table = pd.read_csv(out / "confirm.csv")
    assert len(table) == 3 and set(table["kind"]) == {"searched", "baseline"} and "pafpn" in set(table["neck"])
    runs = sorted((out / "runs").glob("*/metrics.json"))
    assert len(runs) == 6
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    runs[0].unlink()  # interrupted before this run finished
    capsys.readouterr()
    assert main(args) == 0
    retrained = [line for line in capsys.readouterr().out.splitlines() if " seed " in line and "AP" in line]
    assert len(retrained) == 1  # only the missing run trained again
    assert all(p.stat().st_mtime_ns == stamps[p] for p in runs[1:])
    assert (out / "confirm.md").read_text() == md
    assert main(["report", str(run)]) == 0  # the checklist quotes the confirmation's verdict
    verdict = md.splitlines()[2]
    assert f"confirmation at the reference budget: {verdict}" in (run / "leaderboard.md").read_text()
    assert main(["confirm", str(run), "--baselines", "best:x"]) == 2
    assert "needs a count" in capsys.readouterr().err


def test_a_search_under_a_head_is_scored_and_confirmed_under_it(tmp_path, cache_dir):
    assert _search(tmp_path, cache_dir, "ret", "--space", SPACE, "--trials", "1", "--baselines", "fpn", "--no-asha",
                   "--promote", "0", "--set", "head=retina", "--set", "anchors=3") == 0
    run = tmp_path / "ret"
    assert json.loads((run / "manifest.json").read_text())["budget"]["head"] == "retina"
    assert "(fp32, retina head)" in (run / "leaderboard.md").read_text()
    confirm = ["confirm", str(run), "--budget", "smoke", "--seeds", "1", "--top", "1", "--baselines", "fpn",
               "--cache", str(cache_dir), "--no-progress"]
    assert main(confirm) == 0  # at the reference budget, under the search's head
    configs = [json.loads(p.read_text())["budget_config"] for p in (run / "confirm").glob("runs/*/metrics.json")]
    assert {c["head"] for c in configs} == {"retina"} and {c["anchors"] for c in configs} == {3}
    assert "(retina head)" in (run / "confirm" / "confirm.md").read_text()
    assert main([*confirm, "--set", "head=fcos", "--out", str(tmp_path / "fcos")]) == 0  # unless --set says
    assert {json.loads(p.read_text())["budget_config"].get("head", "fcos")
            for p in (tmp_path / "fcos").glob("runs/*/metrics.json")} == {"fcos"}


def test_confirm_on_a_cluster_trains_each_missing_run_as_a_ray_task(tmp_path, cache_dir, capsys, monkeypatch):
    import ray

    import nasfpn.proxy.train

    assert _search(tmp_path, cache_dir, "conf", "--space", SPACE, "--trials", "2", "--baselines", "fpn",
                   "--no-asha", "--promote", "0") == 0
    run = tmp_path / "conf"

    def not_here(*args, **kwargs):
        raise AssertionError("a run trained in the driver")

    monkeypatch.setattr(nasfpn.proxy.train, "run_trial", not_here)
    args = ["confirm", str(run), "--budget", "smoke", "--seeds", "2", "--top", "1", "--baselines", "fpn",
            "--cache", str(cache_dir), "--no-progress", "--address", ray.get_runtime_context().gcs_address]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "the runs train as Ray tasks on the cluster at" in out
    trained = [line for line in out.splitlines() if " seed " in line and "AP" in line]
    assert len(trained) == 4 and len(pd.read_csv(run / "confirm" / "confirm.csv")) == 2
    runs = sorted((run / "confirm" / "runs").glob("*/metrics.json"))
    runs[1].unlink()  # the command was killed before this task came back
    assert main(args) == 0
    trained = [line for line in capsys.readouterr().out.splitlines() if " seed " in line and "AP" in line]
    assert len(trained) == 1 and runs[1].exists()
    assert main([*args, "--device", "cuda"]) == 2  # no CUDA here, and on a cluster --gpus-per-trial
    assert "--device cuda:" in capsys.readouterr().err


def test_a_search_warns_once_about_its_budgets_calibration_and_records_it(tmp_path, cache_dir, capsys):
    import shutil

    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.calibrations import record_calibration

    shutil.rmtree(cache_dir / "calibrations", ignore_errors=True)  # another test's calibration of smoke
    assert _search(tmp_path, cache_dir, "uncal", "--space", SPACE, "--trials", "1", "--baselines", "none") == 0
    err = capsys.readouterr().err
    assert err.count("has no calibration on synthetic") == 1
    path = record_calibration(cache_dir, "synthetic", read_budget("smoke"), "longer", {"tau": 0.42, "necks": 5},
                              tmp_path / "calibration.md")
    try:
        assert _search(tmp_path, cache_dir, "cal", "--space", SPACE, "--trials", "1", "--baselines", "none") == 0
        err = capsys.readouterr().err
        assert err.count("at Kendall tau 0.420 against longer") == 1 and "below --min-tau 0.6" in err
        manifest = json.loads((tmp_path / "cal" / "manifest.json").read_text())
        assert manifest["calibration"]["tau"] == 0.42
        board = (tmp_path / "cal" / "leaderboard.md").read_text()
        assert "calibration of the budget on the data: Kendall tau 0.420" in board
    finally:
        path.unlink()


def test_warm_start_from_the_zoo_and_from_another_run(tmp_path, cache_dir, capsys):
    assert _search(tmp_path, cache_dir, "first", "--space", SPACE, "--trials", "2", "--baselines", "none",
                   "--warm-start", "zoo") == 0
    first = tmp_path / "first"
    (baseline,) = [r for r in read_trials(first) if r.is_baseline]  # trained: the zoo point needs its score
    assert baseline.name == "nasfpn-proxy"
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{first / 'study.db'}")
    (told,) = [t for t in study.trials if "warm_start" in t.user_attrs]
    assert told.user_attrs["warm_start"] == "zoo:nasfpn-proxy" and told.value == pytest.approx(baseline.metrics.AP)

    assert _search(tmp_path, cache_dir, "second", "--space", SPACE, "--trials", "1", "--baselines", "none",
                   "--warm-start", str(first)) == 0
    second = tmp_path / "second"
    sampled = [r for r in read_trials(first) if not r.is_baseline and r.state in ("complete", "pruned")]
    study = optuna.load_study(study_name="second", storage=f"sqlite:///{second / 'study.db'}")
    told = sorted(t.user_attrs["warm_start"].split(":")[1] for t in study.trials if "warm_start" in t.user_attrs)
    assert told == sorted(r.name for r in sampled) and told  # told, not trained again
    assert len(read_trials(second)) == 1
    assert "warm start:" in (second / "leaderboard.md").read_text()

    capsys.readouterr()
    assert _search(tmp_path, cache_dir, "third", "--space", SPACE, "--trials", "1", "--set", "steps=13",
                   "--warm-start", str(first)) == 2
    assert "another budget (steps differ)" in capsys.readouterr().err
    assert not (tmp_path / "third").exists()
