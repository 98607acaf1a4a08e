"""The leaderboard's checklist names the random searches run beside a search on the same space,
budget and data, with the best AP they reached."""

import json
import shutil
from pathlib import Path

from nasfpn.export.report import write_report
from nasfpn.search.records import COMPLETE, PRUNED, TrialMetrics, TrialRecord
from nasfpn.search.store import append_trial

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "runs" / "nasfpn-60"


def _copy(runs: Path, name: str, **args) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    manifest = json.loads((COMMITTED / "manifest.json").read_text())
    manifest["args"].update(args)
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _sampled(run: Path, aps: list) -> None:
    for i, ap in enumerate(aps):
        append_trial(run, TrialRecord(f"x{i}", "search", f"t{i}", COMPLETE if ap else PRUNED, number=i, key=f"k{i}",
                                      genotype="kind: genotype\n", metrics=TrialMetrics(AP=ap)))


def test_a_random_search_beside_the_run_is_its_control(tmp_path):
    search = _copy(tmp_path, "tpe-run")
    shutil.copy(COMMITTED / "trials.jsonl", search / "trials.jsonl")
    _sampled(_copy(tmp_path, "random-s0", sampler="random"), [0.30, None, 0.32])
    _sampled(_copy(tmp_path, "random-other-data", sampler="random", data="coco:/elsewhere"), [0.5])
    _sampled(_copy(tmp_path, "tpe-s1", sampler="tpe"), [0.6])
    write_report(search)
    board = (search / "leaderboard.md").read_text()
    assert "- random-search control: `random-s0` (best sampled AP 32.0 in 3 trials)" in board


def test_without_one_the_checklist_says_how_to_run_it(tmp_path):
    search = _copy(tmp_path, "tpe-run")
    shutil.copy(COMMITTED / "trials.jsonl", search / "trials.jsonl")
    write_report(search)
    assert "random-search control: none beside this run" in (search / "leaderboard.md").read_text()
