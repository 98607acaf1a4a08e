"""nasfpn calibrate: the ranking figures from known scores, and the command end to end on the smoke
budget against a longer one, resumable run by run."""

import shutil

import pytest

from nasfpn.cli import main
from nasfpn.export.calibration import calibration


def _rows(aps, seed=0):
    return [{"neck": n, "seed": seed, "AP": ap / 100} for n, ap in aps.items()]


def test_the_figures_of_a_calibration():
    proxy = _rows({"a": 30, "b": 28, "c": 29, "d": 20}) + _rows({"a": 31}, seed=1) + _rows({"a": 29}, seed=2)
    reference = _rows({"a": 40, "b": 39, "c": 35, "d": 30})
    c = calibration(proxy, reference)
    assert c["necks"] == ["a", "b", "c", "d"]
    assert c["tau"] == pytest.approx(4 / 6)  # one discordant pair (b, c) of six
    assert [(x, y) for x, y, *_ in c["wrong"]] == [("b", "c")]
    assert c["top_overlap"] == 3 and c["pairs"] == 6
    assert c["seed_std"] == {"a": pytest.approx(1.0)}  # a's three seeds: 30, 31, 29


@pytest.mark.slow
def test_calibrate_end_to_end_and_resumable(tmp_path, cache_dir, capsys):
    reference = tmp_path / "longer.yaml"
    reference.write_text("base: smoke\nsteps: 24\n")
    out = tmp_path / "cal"
    args = ["calibrate", "--budget", "smoke", "--reference", str(reference), "--necks", "fpn,bifpn,nasfpn_space:1",
            "--noise-seeds", "2", "--out", str(out), "--cache", str(cache_dir), "--no-progress"]
    assert main(args) == 0
    md = (out / "calibration.md").read_text()
    assert "3 necks: Kendall tau" in md and "smoke against longer" in md and "fpn's seed std" in md
    assert (out / "calibration.png").stat().st_size > 1000 and (out / "calibration.csv").exists()
    runs = sorted(out.glob("*/runs/*/metrics.json"))
    assert [p.parent.name for p in runs] == ["bifpn-s0", "fpn-s0", "nasfpn_space-0-s0",
                                             "bifpn-s0", "fpn-s0", "fpn-s1", "nasfpn_space-0-s0"]
    runs[-1].unlink()  # interrupted there
    capsys.readouterr()
    assert main(args) == 0
    trained = [ln for ln in capsys.readouterr().out.splitlines() if " seed " in ln and ": AP " in ln]
    assert trained == [ln for ln in trained if ln.startswith("nasfpn_space-0 seed 0")] and len(trained) == 1
    assert (out / "calibration.md").read_text() == md
    assert main(["calibrate", "--necks", "fpn,bifpn", "--out", str(out)]) == 2
    assert "at least 3 necks" in capsys.readouterr().err
    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.calibrations import find_calibration

    recorded = find_calibration(cache_dir, "synthetic", read_budget("smoke"))
    assert recorded["reference"] == "longer" and recorded["necks"] == 3  # where a search looks it up
    shutil.rmtree(cache_dir / "calibrations")  # the session's shared cache: leave no calibration of smoke


def test_a_calibration_is_found_for_its_data_and_budget_only(tmp_path):
    import dataclasses

    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.calibrations import find_calibration, record_calibration

    smoke = read_budget("smoke")
    path = record_calibration(tmp_path, "synthetic", smoke, "full", {"tau": 0.7, "necks": 15}, tmp_path / "c.md")
    assert find_calibration(tmp_path, "synthetic", smoke)["tau"] == 0.7
    assert find_calibration(tmp_path, "synthetic", dataclasses.replace(smoke, name="renamed"))["tau"] == 0.7
    assert find_calibration(tmp_path, "synthetic", dataclasses.replace(smoke, steps=13)) is None
    assert find_calibration(tmp_path, "coco:/data/coco", smoke) is None
    path.write_text("{ torn")
    assert find_calibration(tmp_path, "synthetic", smoke) is None  # unreadable: as if there were none


def test_a_calibration_beside_the_runs_is_found_from_an_empty_cache(tmp_path):
    """A calibration committed with a project's runs (RUNS/NAME/calibration.json) serves a clone
    whose cache has none; the cache's own entry comes first."""
    import dataclasses

    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.calibrations import find_calibration, record_calibration

    smoke = read_budget("smoke")
    runs, elsewhere = tmp_path / "runs", tmp_path / "fresh-cache"
    (runs / "calibration").mkdir(parents=True)
    record_calibration(tmp_path / "cache", "synthetic", smoke, "full", {"tau": 0.8, "necks": 15},
                       runs / "calibration" / "calibration.md")
    assert find_calibration(elsewhere, "synthetic", smoke) is None  # the cache alone
    found = find_calibration(elsewhere, "synthetic", smoke, runs)
    assert found["tau"] == 0.8 and found["report"] == str(runs / "calibration" / "calibration.md")
    assert find_calibration(elsewhere, "synthetic", dataclasses.replace(smoke, steps=13), runs) is None
    record_calibration(elsewhere, "synthetic", smoke, "longer", {"tau": 0.5, "necks": 4}, tmp_path / "c.md")
    assert find_calibration(elsewhere, "synthetic", smoke, runs)["reference"] == "longer"


def test_the_reference_scores_under_the_proxys_head_unless_told_otherwise():
    from nasfpn.cli.calibrate import reference_budget
    from nasfpn.dsl.budget import read_budget

    retina = read_budget("proxy", ["head=retina", "anchors=3"])
    same = reference_budget("full", [], retina)
    assert (same.head, same.anchors, same.steps) == ("retina", 3, 6000)
    fcos = reference_budget("full", ["head=fcos", "steps=1200"], retina)
    assert (fcos.head, fcos.steps) == ("fcos", 1200)
    assert fcos.as_dict() == read_budget("full", ["steps=1200", "head=fcos"]).as_dict()


def test_a_reference_from_the_proxys_preset_is_named_apart_and_its_errors_name_the_flag():
    from nasfpn.cli.calibrate import reference_budget
    from nasfpn.dsl import DSLError
    from nasfpn.dsl.budget import read_budget

    proxy = read_budget("proxy")
    longer = reference_budget("proxy", ["steps=1200"], proxy)
    assert (longer.name, longer.steps) == ("proxy-reference", 1200)  # its runs in OUT/proxy-reference/
    with pytest.raises(DSLError, match="--reference-set head=bogus"):
        reference_budget("full", ["head=bogus"], proxy)
    with pytest.raises(DSLError, match="--reference-set"):
        reference_budget("full", ["noequals"], proxy)
