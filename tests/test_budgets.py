"""Budgets are data: the presets in budgets/*.yaml, users' files, `--set key=value` overrides, and
one located line for every mistake."""

from __future__ import annotations

import json

import pytest

from nasfpn.cli import main
from nasfpn.dsl import DSLError
from nasfpn.dsl.budget import FIELDS, HEAD_FIELDS, Budget, budget_from_dict, budget_names, read_budget

# A value for --set of every field, other than its value in `smoke`, and what it reads as.
OVERRIDES = {
    "name": ("mine", "mine"), "image_size": ("512", 512), "train_images": ("1000", 1000),
    "val_images": ("50", 50), "batch": ("4", 4), "steps": ("20", 20), "lr": ("1e-3", 1e-3),
    "schedule": ("constant", "constant"), "warmup": ("3", 3), "width": ("32", 32), "head_depth": ("2", 2),
    "backbone": ("resnet50", "resnet50"), "backbone_weights": ("/w/resnet50.pth", "/w/resnet50.pth"),
    "backbone_mode": ("frozen", "frozen"), "backbone_steps": ("0", 0), "backbone_warmup": ("0", 0),
    "backbone_lr_scale": ("0.5", 0.5), "augment": ("flip+jitter", "flip+jitter"), "jitter": ("0.5,1.5", (0.5, 1.5)),
    "evals": ("3", 3), "neck_init": ("default", "default"), "precision": ("bf16", "bf16"),
    # a head that reads every head field, so that each is recorded
    "head": ("faster_rcnn", "faster_rcnn"), "anchors": ("3", 3), "anchor_scale": ("8", 8.0),
    "box_loss": ("giou", "giou"), "nms": ("soft", "soft"), "nms_sigma": ("0.3", 0.3),
    "roi_levels": ("soft", "soft"), "roi_canonical": ("112", 112.0), "proposals": ("50", 50),
    "consistent_supervision": ("true", True),
    "supervision_weight": ("0.5", 0.5),
}


def test_a_budget_records_the_head_fields_its_head_reads_and_older_records_read_as_fcos():
    fcos = read_budget("proxy", ["head=fcos", "anchors=3", "roi_levels=soft"])  # fields fcos does not read
    assert "head" not in fcos.as_dict() and "anchors" not in fcos.as_dict() and "roi_canonical" not in fcos.as_dict()
    assert fcos.as_dict() == read_budget("proxy", ["head=fcos"]).as_dict()
    assert read_budget("proxy").as_dict()["head"] == "retina"  # the preset's head (budgets/proxy.yaml)
    retina = read_budget("proxy", ["anchors=3", "roi_levels=soft", "nms=soft"]).as_dict()
    assert (retina["head"], retina["anchors"], retina["nms"], retina["nms_sigma"]) == ("retina", 3, "soft", 0.5)
    assert "roi_levels" not in retina and "supervision_weight" not in retina
    old = {k: v for k, v in fcos.as_dict().items() if k != "precision"}  # a record of last year
    assert budget_from_dict(old, "metrics.json").head == "fcos"
    assert read_budget("proxy", ["head=faster_rcnn"]).as_dict()["roi_canonical"] == 36.0  # the 128-pixel preset's


def test_every_preset_loads_and_full_is_the_proxy_trained_longer_end_to_end():
    assert budget_names() == ["full", "proxy", "quick", "smoke"]
    budgets = {name: read_budget(name) for name in budget_names()}
    assert all(b.name == name for name, b in budgets.items())
    proxy, full = budgets["proxy"], budgets["full"]
    assert (proxy.backbone_mode, full.backbone_mode) == ("cached", "train")
    assert full.steps == 10 * proxy.steps and full.neck_init == "default"
    # one pretrained backbone for both: every field the pretraining reads is the same
    for field in ("image_size", "train_images", "backbone", "backbone_steps", "backbone_warmup", "batch", "lr",
                  "width", "head_depth"):
        assert getattr(full, field) == getattr(proxy, field), field


def test_every_field_is_overridable_with_set():
    assert set(OVERRIDES) == set(FIELDS)
    sets = [f"{k}={text}" for k, (text, _) in OVERRIDES.items()]
    b = read_budget("smoke", sets)
    for key, (_, value) in OVERRIDES.items():
        assert getattr(b, key) == value, key
    again = budget_from_dict(json.loads(json.dumps(b.as_dict())), "metrics.json")  # as a manifest keeps it
    assert again == b


def test_a_user_file_starts_from_a_base_and_records_its_own_name(tmp_path):
    path = tmp_path / "coco512.yaml"
    path.write_text("base: proxy\nimage_size: 512\nlr: 1e-3   # YAML reads this as text: taken as a number\n"
                    "backbone_mode: frozen\naugment: flip\n")
    b = read_budget(str(path), ["steps=50"])
    assert (b.name, b.image_size, b.lr, b.steps, b.width, b.augments) == ("coco512", 512, 1e-3, 50, 64, ("flip",))
    assert b == read_budget(path, ["steps=50"])
    nested = tmp_path / "nested.yaml"
    nested.write_text("base: coco512.yaml\nbatch: 4\n")  # a base file beside this one
    assert read_budget(nested).image_size == 512 and read_budget(nested).name == "nested"


def _error(tmp_path, text: str | None, sets: list[str], capsys) -> str:
    budget = "smoke"
    if text is not None:
        (tmp_path / "b.yaml").write_text(text)
        budget = str(tmp_path / "b.yaml")
    with pytest.raises(DSLError) as info:
        read_budget(budget, sets)
    rc = main(["train", "--neck", "fpn", "--budget", budget, *sum((["--set", s] for s in sets), []),
               "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written before the budget is known to be good
    return str(info.value)


@pytest.mark.parametrize("text, sets, message", [
    ("image_size: 128\nstpes: 10\n", [], "b.yaml:2: stpes: unknown budget field (did you mean 'steps'?)"),
    ("steps: ten\n", [], "b.yaml:1: steps: expected an integer in 1..100000000, got 'ten'"),
    ("steps: 0\n", [], "b.yaml:1: steps: expected an integer in 1..100000000, got 0 (a number)"),
    ("lr: -1\n", [], "b.yaml:1: lr: expected a number above 0 and at most 10, got -1.0"),
    ("lr: .nan\n", [], "b.yaml:1: lr: expected a number above 0 and at most 10, got nan"),
    ("batch: true\n", [], "b.yaml:1: batch: expected an integer in 1..4096, got true (a boolean)"),
    ("backbone: resnet101\n", [], "b.yaml:1: backbone: unknown value 'resnet101' (did you mean 'resnet18'?)"),
    ("backbone_mode: live\n", [], "b.yaml:1: backbone_mode: unknown value 'live'"),
    ("jitter: [1.5, 0.5]\n", [], "b.yaml:1: jitter: expected [low, high] with low <= high, got [1.5, 0.5]"),
    ("jitter: 2\n", [], "b.yaml:1: jitter: expected two numbers [low, high], got 2 (a number)"),
    ("steps: 10\nsteps: 20\n", [], "b.yaml:2: steps: key 'steps' is given twice (lines 1 and 2)"),
    ("- steps\n", [], "b.yaml: a budget is a mapping of fields, got a list"),
    ("base: nothere\n", [], "no budget preset or file named 'nothere'"),
    ("base: b.yaml\n", [], "base: bases nested more than 4 deep (a cycle?)"),
    ("augment: flip\n", [], "augment: flip needs the images, but backbone_mode cached"),
    ("backbone_weights: /w.pth\n", [], "backbone_weights: the proxy backbone is pretrained here"),
    ("warmup: 100\nsteps: 10\n", [], "warmup: 100 warmup steps exceed the 10 steps"),
    (None, ["steps"], "--set: expected key=value (e.g. steps=2000), got 'steps'"),
    (None, ["stepz=3"], "--set stepz=3: stepz: unknown budget field (did you mean 'steps'?)"),
    (None, ["image_size=huge"], "--set image_size=huge: image_size: expected an integer in 32..4096, got 'huge'"),
    (None, ["image_size=8192"], "--set image_size=8192: image_size: expected an integer in 32..4096"),
    (None, ["neck_init=zeros"], "--set neck_init=zeros: neck_init: unknown value 'zeros'"),
    (None, ["jitter=0.5"], "--set jitter=0.5: jitter: expected two numbers [low, high]"),
    (None, ["head=yolo"], "--set head=yolo: head: unknown value 'yolo'"),
    (None, ["anchors=4"], "--set anchors=4: anchors: expected one of 1, 3, 6, 9 anchors per location, got 4"),
    ("consistent_supervision: maybe\n", [], "b.yaml:1: consistent_supervision: expected true or false, got 'maybe'"),
    ("nms: greedy\n", [], "b.yaml:1: nms: unknown value 'greedy'"),
    (None, ["supervision_weight=0"], "supervision_weight: expected a number above 0 and at most 10, got 0.0"),
])
def test_a_malformed_budget_or_set_is_one_located_line(tmp_path, capsys, text, sets, message):
    got = _error(tmp_path, text, sets, capsys)
    assert message in got, got
    assert len(got.splitlines()) >= 1 and all(line.strip() for line in got.splitlines())


def test_an_unknown_budget_name_lists_the_presets(tmp_path, capsys):
    assert main(["train", "--neck", "fpn", "--budget", "proxi", "--out", str(tmp_path / "o")]) == 2
    assert "no budget preset or file named 'proxi' (did you mean 'proxy'?)" in capsys.readouterr().err


def test_metrics_record_the_whole_resolved_budget(smoke):
    import nasfpn
    from nasfpn.proxy.train import run_trial

    m = run_trial(nasfpn.load("fpn"), smoke, measure=False, progress=False)
    assert m["budget_config"] == smoke.budget.as_dict()
    assert set(m["budget_config"]) == set(FIELDS) - set(HEAD_FIELDS)  # fcos, as every budget was before heads
    assert Budget(**{**smoke.budget.as_dict(), "jitter": tuple(m["budget_config"]["jitter"])}) == smoke.budget


def test_a_budget_scores_under_another_budgets_head_but_the_fields_kept():
    from nasfpn.dsl.budget import with_head_of

    search = read_budget("proxy", ["head=faster_rcnn", "roi_levels=soft", "nms=soft"])
    full = with_head_of(read_budget("full"), search)
    assert (full.head, full.roi_levels, full.nms, full.steps) == ("faster_rcnn", "soft", "soft", 6000)
    kept = with_head_of(read_budget("full", ["roi_levels=fpn"]), search, keep=["roi_levels"])
    assert (kept.head, kept.roi_levels) == ("faster_rcnn", "fpn")
    # a field the budget's own head does not read is kept too
    retina = read_budget("proxy", ["head=retina"])
    assert with_head_of(read_budget("full", ["anchors=3"]), retina, keep=["anchors"]).anchors == 3
    assert "roi_canonical" not in read_budget("proxy", ["head=faster_rcnn", "roi_levels=soft"]).as_dict()
