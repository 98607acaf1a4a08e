"""The proxy trainer end to end on the smoke budget: synthetic data, training, metrics, files."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nasfpn
from nasfpn.cli import main
from nasfpn.dsl.budget import read_budget
from nasfpn.ops.blocks import ScaleWiseAggregation
from nasfpn.ops.fuse import ConcatConv
from nasfpn.proxy.cost import count_flops
from nasfpn.proxy.data import load_data
from nasfpn.proxy.data.synthetic import CLASSES, render
from nasfpn.proxy.init import passthrough_init_
from nasfpn.proxy.prepare import fingerprint
from nasfpn.proxy.train import build_detector, run_trial

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def test_synthetic_data_is_deterministic_and_spans_the_pyramid():
    a, b = render(0, "train", 5, 128), render(0, "train", 5, 128)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(render(1, "train", 5, 128)[0], a[0])
    assert not np.array_equal(render(0, "val", 5, 128)[0], a[0])
    sides, labels = [], []
    for i in range(150):
        _, boxes, lbs = render(0, "train", i, 128)
        sides += list(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        labels += list(lbs)
    assert min(sides) < 8 and max(sides) > 90              # a few pixels up to most of the image
    assert set(labels) == set(range(len(CLASSES)))
    small = load_data("synthetic", 64, 8, 4)
    big = load_data("synthetic", 64, 16, 4)
    for i in range(8):  # image i depends only on (seed, split, i)
        assert torch.equal(small.train.images.read(i), big.train.images.read(i))


def test_smoke_training_produces_all_metrics(smoke):
    m = run_trial(nasfpn.load("fpn"), smoke, seed=0, progress=False)
    for key in METRICS:
        assert key in m
        assert m[key] is None or np.isnan(m[key]) or 0.0 <= m[key] <= 1.0
    for key in ("neck_params", "model_params", "neck_flops", "model_flops", "latency_ms", "train_seconds",
                "images_per_second"):
        assert m[key] > 0, key
    assert m["model_params"] > m["neck_params"] and m["model_flops"] > m["neck_flops"]
    assert m["budget"] == "smoke" and m["seed"] == 0 and "torch" in m["versions"]


def test_same_seed_same_ap_different_seed_differs(smoke):
    g = nasfpn.load("nasfpn-proxy")
    runs = [run_trial(g, smoke, seed=s, progress=False, measure=False) for s in (3, 3, 4)]
    assert abs(runs[0]["AP"] - runs[1]["AP"]) <= 1e-6 and runs[0]["final_losses"] == runs[1]["final_losses"]
    assert runs[0]["final_losses"] != runs[2]["final_losses"]


def test_runs_record_the_backbone_fingerprint_and_threads(smoke):
    state = smoke.backbone_state
    assert fingerprint({k: v.clone() for k, v in state.items()}) == smoke.backbone_fingerprint
    name = next(k for k, v in state.items() if v.is_floating_point())
    nudged = {**state, name: state[name] + 1e-6}
    assert fingerprint(nudged) != smoke.backbone_fingerprint
    m = run_trial(nasfpn.load("fpn"), smoke, seed=0, progress=False, measure=False)
    assert m["backbone_fingerprint"] == smoke.backbone_fingerprint
    assert m["threads"] == torch.get_num_threads()


def test_recursive_neck_trains_through_the_backbone_hook(smoke):
    m = run_trial(nasfpn.load("rfp"), smoke, seed=0, progress=False)
    plain = run_trial(nasfpn.load("fpn"), smoke, seed=0, progress=False)
    assert m["model_flops"] > plain["model_flops"] * 1.3  # the backbone and FPN run twice


def _neck_convs(name: str, seed: int = 0):
    torch.manual_seed(seed)
    neck = nasfpn.build_neck(nasfpn.load(name), [64, 128, 256], 16)
    convs = {n: m for n, m in neck.named_modules() if isinstance(m, torch.nn.Conv2d)}
    square = sorted(n for n, m in convs.items() if m.in_channels == m.out_channels and m.groups == 1)
    return neck, convs, square


# nasfpn-proxy: a relu-conv-bn per merge node, 7 nodes, 3 stacks; pafpn: 9 post-convs, 4 bottom-up
# stride-2 convs into P4..P7 and P7 = conv(P6)
@pytest.mark.parametrize("name,square_convs,strided_convs", [("nasfpn-proxy", 3 * 7, 0), ("pafpn", 14, 5)])
def test_passthrough_init_passes_features_through_and_keeps_other_convs(name, square_convs, strided_convs):
    neck, convs, square = _neck_convs(name)
    before = {n: p.clone() for n, p in neck.named_parameters()}
    assert passthrough_init_(neck, noise=0.0) == len(square) == square_convs
    x = torch.randn(2, 16, 8, 8)
    for n in square:  # without noise: exactly the identity or, strided, subsampling (plus any bias)
        m = convs[n]
        bias = 0 if m.bias is None else m.bias[None, :, None, None]
        step = m.stride[0]
        torch.testing.assert_close(m(x) - bias, x[:, :, ::step, ::step])
    assert sum(convs[n].stride[0] > 1 for n in square) == strided_convs
    for n in set(convs) - set(square):  # the laterals 64/128/256 -> 16: untouched
        assert torch.equal(convs[n].weight, before[f"{n}.weight"])

    noisy, noisy_convs, _ = _neck_convs(name)  # same seed: same default weights as `before`
    passthrough_init_(noisy, noise=0.5)
    for n in square:
        w = noisy_convs[n].weight
        torch.testing.assert_close(w - torch.nn.init.dirac_(torch.empty_like(w)), 0.5 * before[f"{n}.weight"])


def test_passthrough_init_starts_concat_merges_and_sfam_at_the_mean_of_their_inputs():
    # mlfpn: per TUM 4 stride-2 encoder convs, 4 decoder conv3x3s, 5 output conv1x1s and the FFMv2
    # concat; FFMv1's concat; SFAM's 5 reduce convs over the 8 stacks
    neck, convs, square = _neck_convs("mlfpn")
    concats = [m for m in neck.modules() if isinstance(m, ConcatConv)]
    reduces = [r for m in neck.modules() if isinstance(m, ScaleWiseAggregation) for r in m.reduce]
    before = {id(r): r.weight.clone() for r in [c.conv for c in concats] + reduces}
    assert (len(square), len(concats), len(reduces)) == (8 * 13, 9, 5)
    assert passthrough_init_(neck, noise=0.0) == 8 * 13 + 9 + 5
    for k, merge in [(3, concats[0]), (2, concats[1])]:  # FFMv1 (P3, P4, P5), FFMv2 (base, last P3)
        xs = [torch.randn(2, 16, 8, 8) for _ in range(k)]
        bias = 0 if merge.conv.bias is None else merge.conv.bias[None, :, None, None]
        torch.testing.assert_close(merge(xs) - bias, sum(xs) / k)
    stacks = torch.randn(2, 8 * 16, 4, 4)
    torch.testing.assert_close(reduces[0](stacks) - reduces[0].bias[None, :, None, None],
                               stacks.view(2, 8, 16, 4, 4).mean(dim=1))

    noisy = _neck_convs("mlfpn")[0]  # same seed: the same default weights as `before`
    passthrough_init_(noisy, noise=0.5)
    noisy_means = ([m.conv for m in noisy.modules() if isinstance(m, ConcatConv)]
                   + [r for m in noisy.modules() if isinstance(m, ScaleWiseAggregation) for r in m.reduce])
    for conv, default in zip(noisy_means, [c.conv for c in concats] + reduces, strict=True):
        k = conv.in_channels // conv.out_channels
        mean = torch.cat([torch.eye(16)] * k, dim=1)[:, :, None, None] / k
        torch.testing.assert_close(conv.weight - mean, 0.5 * before[id(default)])


def test_passthrough_init_starts_a_square_concat_once():
    # one TUM: SFAM's reduce convs are 16 -> 16, matched both as SFAM's and as square convs
    g = nasfpn.load("mlfpn")
    torch.manual_seed(0)
    neck = nasfpn.build_neck(dataclasses.replace(g, cell=dataclasses.replace(g.cell, repeats=1)), [64, 128, 256], 16)
    reduces = [r for m in neck.modules() if isinstance(m, ScaleWiseAggregation) for r in m.reduce]
    default = [r.weight.clone() for r in reduces]
    passthrough_init_(neck, noise=0.5)
    for r, w in zip(reduces, default, strict=True):
        torch.testing.assert_close(r.weight - torch.nn.init.dirac_(torch.empty_like(w)), 0.5 * w)


def test_proxy_starts_necks_as_a_passthrough_full_at_the_default_init(smoke):
    g = nasfpn.load("nasfpn-proxy")
    conv = "graph.cells.0.nodes.1.post.1"  # a merge node's relu-conv-bn
    passthrough = dict(build_detector(g, smoke, seed=0).neck.named_modules())
    default = dict(build_detector(g, dataclasses.replace(
        smoke, budget=dataclasses.replace(smoke.budget, neck_init="default")), seed=0).neck.named_modules())
    centre = passthrough[conv].weight[:, :, 1, 1].diagonal()
    assert smoke.budget.neck_init == "passthrough" and read_budget("full").neck_init == "default"
    assert centre.min() > 0.5 and default[conv].weight[:, :, 1, 1].diagonal().abs().max() < 0.5
    with pytest.raises(nasfpn.DSLError, match="neck_init: unknown value 'zeros'"):
        read_budget("proxy", ["neck_init=zeros"])


def test_flop_count_includes_resampling_and_pooling():
    x = torch.randn(1, 8, 16, 16)
    assert count_flops(lambda: F.interpolate(x, size=[32, 32])) == 8 * 32 * 32
    assert count_flops(lambda: F.max_pool2d(x, 2, 2)) == 8 * 8 * 8 * 4
    assert count_flops(lambda: x + x) == 8 * 16 * 16


def test_train_command_writes_genotype_then_metrics(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--neck", "bifpn", "--budget", "smoke", "--seed", "1", "--out", str(out),
               "--cache", str(cache_dir), "--no-progress"])
    assert rc == 0
    assert nasfpn.from_yaml((out / "genotype.yaml").read_text()) == nasfpn.load("bifpn")
    metrics = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN written as null
    assert metrics["neck"] == "bifpn" and metrics["seed"] == 1
    assert "AP" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--data", "mnist"], "unknown data source 'mnist'"),
])  # numeric options out of range are argparse's: tests/test_careless_input.py
def test_train_command_user_errors_exit_2(tmp_path, cache_dir, capsys, argv, message):
    if argv[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    rc = main(["train", "--neck", "fpn", "--budget", "smoke", "--out", str(tmp_path), "--cache", str(cache_dir),
               *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_baselines_command_writes_tables_and_plot(tmp_path, cache_dir):
    out = tmp_path / "baselines"
    args = ["baselines", "--budget", "smoke", "--seeds", "2", "--necks", "fpn,bifpn", "--out", str(out),
            "--cache", str(cache_dir), "--no-progress"]
    assert main(args) == 0
    table = (out / "table.md").read_text()
    assert "| fpn |" in table and "| bifpn |" in table and "±" in table
    import pandas as pd
    csv = pd.read_csv(out / "table.csv")
    assert set(csv["neck"]) == {"fpn", "bifpn"} and (csv["seeds"] == 2).all()
    assert (out / "ap_vs_flops.png").stat().st_size > 1000
    before = (out / "runs" / "fpn-s0" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0  # a re-run keeps finished runs
    assert (out / "runs" / "fpn-s0" / "metrics.json").stat().st_mtime_ns == before
    # a run written before budgets had `precision` ran in fp32: kept for the fp32 smoke budget...
    done = out / "runs" / "fpn-s0" / "metrics.json"
    old = json.loads(done.read_text())
    del old["budget_config"]["precision"], old["precision"]
    done.write_text(json.dumps(old))
    before = done.stat().st_mtime_ns
    assert main(args) == 0
    assert done.stat().st_mtime_ns == before
    # ...and trained again when the budget asks for another precision
    assert main(args + ["--set", "precision=bf16"]) == 0
    assert json.loads(done.read_text())["precision"] == "bf16" and "(bf16, fcos head)" in (out / "table.md").read_text()


def test_synthetic_disk_cache_reloads_the_same_split(tmp_path):
    from nasfpn.proxy.data import DISK_CACHE_MIN_IMAGES, ArrayImages, synthetic_split

    n = DISK_CACHE_MIN_IMAGES
    made = synthetic_split(5, "val", n, 32, cache=tmp_path)
    assert list(tmp_path.glob("synthetic-s5-val-32px-*/images.npy"))
    loaded = synthetic_split(5, "val", n, 32, cache=tmp_path)
    assert isinstance(loaded.images, ArrayImages) and isinstance(loaded.images.array, np.memmap)  # mapped, not read
    assert np.array_equal(made.images.array, loaded.images.array)
    for a, b, la, lb in zip(made.boxes, loaded.boxes, made.labels, loaded.labels):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
        assert b.base is None  # its own small array, not a view that keeps the whole file alive


def test_a_session_holds_an_index_and_memory_maps_not_decoded_splits(smoke):
    from nasfpn.proxy.data import ArrayImages

    assert load_data("synthetic", 64, 8, 4) is not load_data("synthetic", 64, 8, 4)  # no process-wide cache
    assert smoke.feature_source == "disk cache"
    assert all(isinstance(f, np.memmap) and f.dtype == np.float16 for f in smoke.train_feats + smoke.val_feats)
    assert [f.shape for f in smoke.train_feats] == [(48, 64, 8, 8), (48, 128, 4, 4), (48, 256, 2, 2)]
    assert isinstance(smoke.data.train.images, ArrayImages)
    on_cuda = smoke.on("cuda")
    assert on_cuda.device == "cuda" and smoke.device == "cpu" and on_cuda.data is smoke.data


def test_a_search_hands_its_trials_a_small_spec_that_opens_the_same_session(smoke):
    import pickle

    from nasfpn.proxy.session import shared_session

    assert len(pickle.dumps(smoke.spec)) < 4096  # paths and the budget, not data
    again = shared_session(smoke.spec, "cpu")
    assert again.backbone_fingerprint == smoke.backbone_fingerprint and again.budget == smoke.budget
    assert shared_session(smoke.spec, "cpu").data is again.data  # once per process
    assert all(np.array_equal(a, b) for a, b in zip(again.train_feats, smoke.train_feats, strict=True))


def test_every_command_takes_a_budget_name_or_file_and_sets(tmp_path):
    from nasfpn.cli import build_parser

    parser = build_parser()
    for argv in (["train", "--neck", "fpn", "--out", "x"], ["baselines"], ["search", "--space", "s.yaml"]):
        args = parser.parse_args([*argv, "--budget", "my.yaml", "--set", "steps=5", "--set", "batch=2"])
        assert args.budget == "my.yaml" and args.sets == ["steps=5", "batch=2"]
        assert parser.parse_args(argv).budget == "proxy"


def test_quick_is_a_smaller_proxy_at_the_same_image_size():
    quick, proxy = read_budget("quick"), read_budget("proxy")
    assert (quick.image_size, quick.end_to_end, quick.neck_init) == (proxy.image_size, False, proxy.neck_init)
    assert quick.train_images < proxy.train_images and quick.val_images < proxy.val_images
    assert quick.backbone_steps * quick.batch < proxy.backbone_steps * proxy.batch
    assert quick.steps * quick.batch < proxy.steps * proxy.batch


def test_flop_counts_do_not_depend_on_what_the_process_ran_before():
    from nasfpn.proxy.cost import module_flops

    g = nasfpn.load("mlfpn")  # bilinear upsampling: torch decomposes it in deterministic mode only

    def count() -> int:
        with torch.device("meta"):
            neck = nasfpn.build_neck(g, [64, 128, 256], 64)
            maps = [torch.empty(1, c, 256 // s, 256 // s) for c, s in [(64, 8), (128, 16), (256, 32)]]
        return module_flops(neck, maps)

    before = count()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        during = count()
    finally:
        torch.use_deterministic_algorithms(False)
    assert before == during and not torch.are_deterministic_algorithms_enabled()


def test_a_trial_gives_the_callers_deterministic_setting_back(smoke):
    assert not torch.are_deterministic_algorithms_enabled()
    run_trial(nasfpn.load("fpn"), smoke, measure=False)
    assert not torch.are_deterministic_algorithms_enabled()
