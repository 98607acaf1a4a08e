"""The path of a trial on an accelerator. Without one: every tensor the detector gives back is
tagged as if it lived on a device, and turning one into numpy before moving it to the CPU fails
(the crash `predict` had on CUDA). With CUDA (marker `cuda`): train, evaluate, cost, a search
on half a GPU per trial, AMP on and off, the same seed giving the same AP."""

import json

import numpy as np
import pytest
import torch

import nasfpn
from nasfpn.cli import main
from nasfpn.proxy.train import build_detector, predict


class OnDevice(torch.Tensor):
    """A CPU tensor standing for one on an accelerator: `.numpy()` fails until `.cpu()` or
    `.to("cpu")` moves it; every op on it gives an OnDevice tensor back."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.numpy or func is torch.Tensor.__array__:
            raise AssertionError("numpy() on a tensor that may live on an accelerator, not moved to the CPU")
        moved = func is torch.Tensor.cpu or (func is torch.Tensor.to and _to_cpu(args[1:], kwargs))
        out = super().__torch_function__(func, types, args, kwargs)
        return out.as_subclass(torch.Tensor) if moved and isinstance(out, torch.Tensor) else out


def _to_cpu(args, kwargs) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    return isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"


def test_the_tag_catches_numpy_on_a_device_tensor():
    t = torch.ones(3).as_subclass(OnDevice)
    with pytest.raises(AssertionError, match="not moved to the CPU"):
        (t * 2)[1:].numpy()
    with pytest.raises(AssertionError):
        np.asarray(t + 1)
    assert t.cpu().numpy().tolist() == [1, 1, 1] and (t * 2).to("cpu").numpy().sum() == 6


def test_predict_moves_device_outputs_off_the_device_before_numpy(smoke):
    detector = build_detector(nasfpn.load("fpn"), smoke, seed=0)
    plain = predict(detector, smoke, limit=8)
    forward = detector.forward

    def on_device(*args, **kwargs):
        return {k: t.as_subclass(OnDevice) for k, t in forward(*args, **kwargs).items()}

    detector.forward = on_device
    tagged = predict(detector, smoke, limit=8)
    assert plain[0] == tagged[0] and sum(len(b) for b in plain[1]) > 0
    for a, b in zip(plain[1] + plain[2], tagged[1] + tagged[2]):
        assert type(b) is np.ndarray and np.array_equal(a, b)


no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _train(tmp_path, cache_dir, name, *sets):
    out = tmp_path / name
    args = ["train", "--neck", "fpn", "--budget", "smoke", "--device", "cuda", "--cache", str(cache_dir),
            "--out", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.cuda
@no_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_smoke_train_end_to_end_on_cuda(tmp_path, cache_dir, precision):
    m = _train(tmp_path, cache_dir, precision, f"precision={precision}")
    assert m["device"].startswith("cuda") and m["latency_device"].startswith("cuda")
    assert m["precision"] == precision and np.isfinite(m["AP"]) and m["neck_flops"] > 0
    assert all(np.isfinite(v) for v in m["final_losses"].values())


@pytest.mark.cuda
@no_cuda
@pytest.mark.parametrize("sets", [["head=retina", "nms=soft"], ["head=faster_rcnn", "roi_levels=soft"],
                                  ["head=faster_rcnn", "roi_levels=adaptive_max", "consistent_supervision=true"],
                                  ["head=cornernet"]])
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_every_head_trains_on_cuda(tmp_path, cache_dir, sets, precision):
    m = _train(tmp_path, cache_dir, "head", f"precision={precision}", *sets)
    assert m["device"].startswith("cuda") and np.isfinite(m["AP"])
    assert all(np.isfinite(v) for v in m["final_losses"].values())


@pytest.mark.cuda
@no_cuda
def test_the_same_seed_gives_the_same_ap_on_one_gpu(tmp_path, cache_dir):
    a = _train(tmp_path, cache_dir, "a", "precision=fp32")
    b = _train(tmp_path, cache_dir, "b", "precision=fp32")
    assert a["AP"] == b["AP"] and a["final_losses"] == b["final_losses"]


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.ray
@no_cuda
def test_a_search_on_half_a_gpu_per_trial(tmp_path, cache_dir):
    import ray

    space = str(nasfpn.__path__[0] + "/../search_spaces/nasfpn_space.yaml")
    try:
        rc = main(["search", "--space", space, "--budget", "smoke", "--trials", "1", "--baselines", "fpn",
                   "--gpus-per-trial", "0.5", "--runs-dir", str(tmp_path), "--name", "gpu", "--cache",
                   str(cache_dir), "--no-progress"])
    finally:
        ray.shutdown()
    assert rc == 0
    run = tmp_path / "gpu"
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {r["state"] for r in records} <= {"complete", "pruned"}
    results = [json.loads(line) for f in (run / "tune").rglob("result.json") for line in f.read_text().splitlines()]
    final = [r for r in results if r.get("final")]
    assert final and all(str(r["device"]).startswith("cuda") for r in final)
