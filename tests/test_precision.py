"""Precision of a trial: bf16 autocast on this CPU, fp16 refused on it, the fallback when a CPU
has no native bf16, and the conv that oneDNN's bf16 gets wrong kept in fp32."""

import dataclasses
import json

import pytest
import torch

import nasfpn
from nasfpn.cli import main
from nasfpn.proxy import precision as precision_module
from nasfpn.proxy.precision import Precision, PrecisionError, resolve
from nasfpn.proxy.train import run_trial

needs_bf16 = pytest.mark.skipif(not precision_module.cpu_has_bf16(), reason="this CPU has no native bf16")


def _with(session, precision):
    return dataclasses.replace(session, budget=dataclasses.replace(session.budget, precision=precision))


@needs_bf16
def test_bf16_smoke_trial_trains_like_fp32(smoke):
    fp32 = run_trial(nasfpn.load("fpn"), _with(smoke, "fp32"), seed=0, progress=False, measure=False)
    bf16 = run_trial(nasfpn.load("fpn"), _with(smoke, "bf16"), seed=0, progress=False, measure=False)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert all(map(lambda v: torch.isfinite(torch.tensor(v)), bf16["final_losses"].values()))
    # bf16 keeps 8 bits of mantissa: after 12 steps the losses agree to 2 %, the smoke AP to 0.5 points
    for k, v in fp32["final_losses"].items():
        assert bf16["final_losses"][k] == pytest.approx(v, rel=0.02), k
    assert abs(bf16["AP"] - fp32["AP"]) <= 0.005
    assert bf16["final_losses"] != fp32["final_losses"]  # it did run in another precision


@needs_bf16
def test_bf16_trains_every_neck_kind(smoke):
    for name in ("nasfpn-proxy", "bifpn", "rfp", "mlfpn"):  # merge cells, weighted fusion, feedback, MLFPN
        m = run_trial(nasfpn.load(name), _with(smoke, "bf16"), seed=0, progress=False, measure=False)
        assert all(map(lambda v: torch.isfinite(torch.tensor(v)), m["final_losses"].values())), name


def test_fp16_on_a_cpu_is_one_line_before_anything_runs(tmp_path, capsys, cache_dir):
    out = tmp_path / "run"
    rc = main(["train", "--neck", "fpn", "--budget", "smoke", "--set", "precision=fp16", "--cache", str(cache_dir),
               "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "fp16 needs a CUDA device" in err, err
    assert not out.exists()
    with pytest.raises(PrecisionError, match="fp16 needs a CUDA device"):
        resolve("fp16", "cpu")


def test_auto_is_bf16_where_the_cpu_has_it_else_fp32_said_once(monkeypatch, capsys):
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    assert resolve("auto", "cpu") == Precision("bf16", "cpu")
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(precision_module, "_NOTED", set())
    assert resolve("auto", "cpu") == Precision("fp32", "cpu")
    assert resolve("auto", "cpu").name == "fp32"
    err = capsys.readouterr().err
    assert err.count("no native bf16") == 1 and "training in fp32" in err
    assert resolve("fp32", "cpu").autocast().__class__.__name__ == "nullcontext"


@needs_bf16
def test_a_conv_strided_past_its_input_gets_true_gradients_under_bf16():
    # oneDNN's bf16 weight gradient of a stride-2 conv on a 1x1 map (P6 -> P7 at 64 px) is garbage
    torch.manual_seed(0)
    for _ in range(5):
        conv = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1)
        x = torch.randn(8, 16, 1, 1, requires_grad=True)
        with Precision("bf16", "cpu").autocast():
            y = conv(x)
        y.float().sum().backward()
        x64, w64 = x.detach().double(), conv.weight.detach().double().requires_grad_(True)
        torch.nn.functional.conv2d(x64, w64, None, 2, 1).sum().backward()
        assert torch.allclose(conv.weight.grad.double(), w64.grad, rtol=0.02, atol=0.05)


@needs_bf16
def test_metrics_name_the_precision_and_the_device(tmp_path, cache_dir):
    out = tmp_path / "run"
    assert main(["train", "--neck", "fpn", "--budget", "smoke", "--set", "precision=bf16", "--cache",
                 str(cache_dir), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["budget_config"]["precision"] == "bf16"
    assert metrics["device"] == "cpu" and metrics["latency_device"] == "cpu"


def test_bf16_autocast_keeps_depthwise_convs_in_fp32():
    x = torch.randn(2, 8, 8, 8)
    dense, depthwise = torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    with Precision("bf16", "cpu").autocast():
        assert dense(x).dtype == torch.bfloat16 and depthwise(x).dtype == torch.float32
    assert dense(x).dtype == torch.float32  # nothing outside the block
