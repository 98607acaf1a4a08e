"""Damaged caches are detected, reported in one line, removed and rebuilt: never read as garbage.

Damage as it happens: a copy cut short, a few KB overwritten in the middle, a file from before
the checked format, a FIFO in its place."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nasfpn.dsl.budget import read_budget
from nasfpn.proxy.cache import load_checked, save_checked
from nasfpn.proxy.data import synthetic_split
from nasfpn.proxy.session import ProxySession


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _overwrite_middle(path, n=4096):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = os.urandom(n)
    path.write_bytes(bytes(data))


def _legacy(path):
    torch.save({"conv.weight": torch.ones(3)}, path)  # an unchecked file of the old format


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


DAMAGE = {"truncated": _truncate, "overwritten": _overwrite_middle, "legacy": _legacy, "fifo": _fifo}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_tensor_cache_reads_as_missing(tmp_path, capsys, damage):
    path = tmp_path / "weights.pt"
    save_checked(path, {"w": torch.arange(50_000, dtype=torch.float32), "n": torch.tensor(3)})
    assert torch.equal(load_checked(path, "test weights")["w"], torch.arange(50_000, dtype=torch.float32))
    DAMAGE[damage](path)
    assert load_checked(path, "test weights") is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"warning: {path}: the cached test weights" in err and "rebuilding" in err
    assert not path.exists()


def _smoke(cache):
    return ProxySession.open("synthetic", read_budget("smoke"), cache=cache, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_prepare_rebuilds_a_damaged_backbone_cache(tmp_path, capsys, damage):
    first = _smoke(tmp_path)
    (path,) = tmp_path.glob("backbone-*.pt")
    DAMAGE[damage](path)
    capsys.readouterr()
    again = _smoke(tmp_path)
    assert f"{path}: the cached backbone" in capsys.readouterr().err
    assert path.exists()  # rebuilt in place
    assert again.backbone_fingerprint == first.backbone_fingerprint  # deterministic on one machine


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "fifo"])
def test_a_damaged_feature_cache_is_detected_and_rebuilt_never_read(tmp_path, capsys, damage):
    first = _smoke(tmp_path)
    expected = [np.array(f) for f in first.train_feats]
    (folder,) = [p for p in tmp_path.glob("features-*") if p.is_dir()]
    DAMAGE[damage](folder / "train0.npy")
    capsys.readouterr()
    again = _smoke(tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"warning: {folder}: the cached backbone features" in err
    assert "rebuilding" in err
    assert all(np.array_equal(a, b) for a, b in zip(expected, again.train_feats, strict=True))
    assert _smoke(tmp_path).train_feats[0].filename == again.train_feats[0].filename  # read back, not rebuilt
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_synthetic_dataset_cache_is_regenerated(tmp_path, capsys, damage):
    first = synthetic_split(0, "val", 256, 32, cache=tmp_path)
    expected = np.array(first.images.array)
    (folder,) = [p for p in tmp_path.glob("synthetic-*") if p.is_dir()]
    DAMAGE[damage](folder / "images.npy")
    again = synthetic_split(0, "val", 256, 32, cache=tmp_path)
    assert f"{folder}: the cached dataset" in capsys.readouterr().err
    assert np.array_equal(expected, again.images.array)
    assert all(np.array_equal(a, b) for a, b in zip(first.boxes, again.boxes))
    assert np.array_equal(synthetic_split(0, "val", 256, 32, cache=tmp_path).images.array, expected)  # from disk
    assert capsys.readouterr().err == ""


def _build_in_another_process(folder: str, start: str, n: int) -> str:
    """Open (building if need be) one array-cache entry; returns what the build saw."""
    import time as _time

    from nasfpn.proxy.array_cache import cached_arrays

    while _time.time() < float(start):  # both processes ask at the same moment
        _time.sleep(0.001)
    built = []

    def build(out):
        built.append(True)
        rows = out.create("x", (n,), np.int64)
        rows[:] = np.arange(n)
        _time.sleep(0.3)  # a slow build: the other process must wait for it, not start its own

    arrays = cached_arrays(Path(folder), "test arrays", build)
    return f"{'built' if built else 'opened'} {int(arrays['x'].sum())}"


def test_two_processes_open_one_array_cache_entry_at_once_and_one_builds_it(tmp_path):
    import multiprocessing
    import time

    folder = tmp_path / "entry"
    start = str(time.time() + 0.5)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_build_in_another_process, [(str(folder), start, 1000)] * 2)
    assert sorted(results) == ["built 499500", "opened 499500"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry", "entry.lock"]  # no temporary folder left
