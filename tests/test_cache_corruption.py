"""Damaged caches are detected, reported in one line, removed and rebuilt: never read as garbage.

Damage as it happens: a copy cut short, a few KB overwritten in the middle, a file from before
the checked format, a FIFO in its place."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nasfpn.proxy.budgets import get_budget
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
    return ProxySession.open("synthetic", get_budget("smoke"), cache=cache, progress=False)


@pytest.mark.parametrize("which", [pytest.param("backbone", marks=pytest.mark.slow), "features"])
@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_prepare_rebuilds_damaged_backbone_and_feature_caches(tmp_path, capsys, which, damage):
    first = _smoke(tmp_path)
    (path,) = tmp_path.glob(f"{which}-*.pt")
    DAMAGE[damage](path)
    capsys.readouterr()
    again = _smoke(tmp_path)
    assert f"{path}: the cached backbone" in capsys.readouterr().err
    assert path.exists()  # rebuilt in place
    assert again.backbone_fingerprint == first.backbone_fingerprint  # deterministic on one machine
    for a, b in zip(first.train_feats, again.train_feats):
        assert torch.equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_synthetic_dataset_cache_is_regenerated(tmp_path, capsys, damage):
    first = synthetic_split(0, "val", 256, 32, cache=tmp_path)
    (path,) = tmp_path.glob("synthetic-*.npz")
    DAMAGE[damage](path)
    again = synthetic_split(0, "val", 256, 32, cache=tmp_path)
    assert f"{path}: the cached dataset" in capsys.readouterr().err
    assert torch.equal(first.images, again.images)
    assert all(np.array_equal(a, b) for a, b in zip(first.boxes, again.boxes))
    assert torch.equal(synthetic_split(0, "val", 256, 32, cache=tmp_path).images, first.images)  # from disk
    assert capsys.readouterr().err == ""
