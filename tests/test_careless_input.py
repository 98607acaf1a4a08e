"""Hostile and careless input at the command line: special files, expanding YAML, spaces too
large for a float, numbers that are no numbers, output paths of the wrong kind, code in a class
name. Each ends with one clear line and exit code 2, at once, and writes nothing it should not."""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time

import pytest
import torch

import nasfpn
from nasfpn.cli import main
from nasfpn.dsl.assemble import weight_bound
from nasfpn.dsl.space import format_count

sys.path.insert(0, os.path.dirname(__file__))
from test_dsl_errors import BASE, BOMB  # noqa: E402


def _one_line_exit_2(capsys, argv, *fragments):
    start = time.perf_counter()
    assert main(argv) == 2
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err, seconds


# ----------------------------------------------------------------------------- special files
def _fifo(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path, "is a FIFO, not a regular file"


def _folder(tmp_path):
    path = tmp_path / "folder.yaml"
    path.mkdir()
    return path, "is a directory, not a regular file"


def _socket(tmp_path):
    path = tmp_path / "s.yaml"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return path, "is a socket, not a regular file"


def _device(tmp_path):
    return "/dev/zero", "is a character device, not a regular file"


@pytest.mark.parametrize("make", [_fifo, _folder, _socket, _device], ids=["fifo", "folder", "socket", "device"])
def test_only_regular_files_are_read_and_nothing_blocks(tmp_path, capsys, make):
    path, fragment = make(tmp_path)
    result = {}
    # a FIFO opened for reading the usual way blocks until a writer comes: run it aside
    worker = threading.Thread(target=lambda: result.update(rc=main(["validate", str(path)])), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), f"validate {path} blocked"
    assert result["rc"] == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"{path}: {fragment}"]


def test_the_yaml_bomb_is_refused_in_under_a_second(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    err, seconds = _one_line_exit_2(capsys, ["validate", str(bomb)], f"{bomb}:5: e: the document expands")
    assert seconds < 1.0, seconds


# ----------------------------------------------------------------------------- sizes
def _huge_space() -> tuple[str, int]:
    """59 intermediate nodes picking 3 inputs from the growing pool: more than 1e300 points."""
    lines = ["kind: space", "levels: [P3, P4, P5, P6, P7]", "channels: 8", "defaults: {post: []}", "cell:",
             "  nodes:"]
    size = 1
    for i in range(59):
        lines.append("    - {level: {choice: [P4, P5, P6, P7]}, inputs: {pick: 3}, combine: {choice: [sum, concat]}}")
        size *= 4 * 2 * math.perm(5 + i, 3)
    for j in range(5):
        lines.append(f"    - {{level: {{permutation: [P3, P4, P5, P6, P7]}}, inputs: [n{58 - j}], output: true}}")
    size *= math.factorial(5)
    return "\n".join(lines) + "\n", size


def test_a_space_larger_than_a_float_is_counted_exactly(tmp_path, capsys):
    text, expected = _huge_space()
    space = nasfpn.from_yaml(text)
    assert space.size() == expected and expected > 10 ** 300
    assert format_count(expected) == "more than 1e300"
    assert format_count(nasfpn.load_space("nasfpn_space").size()) == "2.47e+17"
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok (search space, more than 1e300 points)"
    assert main(["show", str(path)]) == 0
    assert "more than 1e300 points" in capsys.readouterr().out


@pytest.mark.parametrize("name", nasfpn.zoo_names("genotype"))
def test_the_weight_bound_bounds_every_zoo_neck(name):
    g = nasfpn.load(name)
    neck = nasfpn.build_neck(g, [g.channels] * 3, g.channels)
    actual = sum(p.numel() for p in neck.parameters())
    assert actual <= weight_bound(g.channels, g.levels, g.stem, g.cell, g.feedback) <= 30 * actual


def test_show_counts_a_large_neck_without_allocating_it(capsys):
    """2048 channels at 8192 px: 3.7 GB of inputs and 7.4 GB of weights if they were real."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["show", "nasfpn", "--channels", "2048", "--image-size", "8192",
                 "--in-channels", "2048,2048,2048"]) == 0
    out = capsys.readouterr().out
    assert "params 1.85 G" in out and "FLOPs" in out
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, grown_mb


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("argv, fragment", [
    (["show", "fpn", "--image-size", "100000000"], "--image-size: expected an integer 8..8192"),
    (["show", "fpn", "--channels", "0"], "--channels: expected an integer 1..2048"),
    (["show", "fpn", "--seed", "-1"], "--seed: expected an integer 0..4294967295"),
    (["export", "fpn", "--format", "yaml", "--out", "x.yaml", "--rank", "0"], "--rank: expected an integer"),
    (["search", "--space", "nasfpn_space", "--cpus-per-trial", "nan"], "--cpus-per-trial: expected a finite number"),
    (["search", "--space", "nasfpn_space", "--cpus-per-trial", "inf"], "--cpus-per-trial: expected a finite number"),
    (["search", "--space", "nasfpn_space", "--gpus-per-trial", "-1"], "--gpus-per-trial: expected a finite number"),
    (["search", "--space", "nasfpn_space", "--trials", "0"], "--trials: expected an integer"),
    (["train", "--neck", "fpn", "--out", "x", "--steps", "0"], "--steps: expected an integer"),
])
def test_numbers_that_are_no_numbers_are_refused(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_show_shows_the_largest_neck_the_limits_allow(tmp_path, capsys):
    """A genotype just inside every limit is shown (params and FLOPs) in seconds."""
    text = BASE.replace("channels: 16", "channels: 2048").replace("cell:\n", "cell:\n  repeats: 6\n")
    path = tmp_path / "big.yaml"
    path.write_text(text)
    assert main(["show", str(path), "--image-size", "1024"]) == 0
    assert "params" in capsys.readouterr().out


# ----------------------------------------------------------------------------- output paths
def test_export_refuses_a_class_name_that_is_not_an_identifier(tmp_path, capsys):
    out = tmp_path / "neck.py"
    for name in ("My Neck", "X(nn.Module):\n    import os  #", "class", "9lives"):
        _one_line_exit_2(capsys, ["export", "fpn", "--format", "py", "--out", str(out), "--class-name", name],
                         "is not a Python identifier")
        assert not out.exists()
    assert main(["export", "fpn", "--format", "py", "--out", str(out), "--class-name", "MyNeck_2"]) == 0
    assert "class MyNeck_2(nn.Module)" in out.read_text()


def test_a_wider_export_is_checked_against_the_size_limit(tmp_path, capsys):
    _one_line_exit_2(capsys, ["export", "nasfpn", "--format", "torchscript", "--out", str(tmp_path / "n.pt"),
                              "--channels", "2048"], "--channels 2048: the neck is too large to build")
    assert not list(tmp_path.iterdir())


def test_output_paths_of_the_wrong_kind_are_one_line(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    _one_line_exit_2(capsys, ["export", "fpn", "--format", "yaml", "--out", str(folder)],
                     f"{folder}: is a directory (expected a file path)")
    _one_line_exit_2(capsys, ["show", "fpn", "--draw", str(folder)],
                     f"--draw {folder}: is a directory (expected a file path)")
    _one_line_exit_2(capsys, ["train", "--neck", "fpn", "--budget", "smoke", "--out", str(a_file)],
                     f"--out {a_file}: is a file (expected a directory)")
    _one_line_exit_2(capsys, ["export", "fpn", "--format", "yaml", "--out", str(a_file / "x.yaml")],
                     f"{a_file}: is a file (expected a directory)")
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]  # no temporary left behind


def test_an_export_that_fails_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from nasfpn.export import formats

    out = tmp_path / "neck.pt"
    assert main(["export", "fpn", "--format", "torchscript", "--out", str(out)]) == 0
    good = out.read_bytes()

    def broken_save(module, path):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(formats.torch.jit, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        formats.export(nasfpn.load("bifpn"), "torchscript", out, [256, 512, 1024])
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["neck.pt"]


def test_a_cache_or_output_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_line_exit_2(capsys, ["train", "--neck", "fpn", "--budget", "smoke", "--out", str(tmp_path / "run"),
                              "--cache", str(a_file / "cache")], f"--cache {a_file / 'cache'}: lies under")
    _one_line_exit_2(capsys, ["train", "--neck", "fpn", "--budget", "smoke", "--out", "/proc/nasfpn-test/run"],
                     "--out /proc/nasfpn-test/run: cannot create the directory")


def test_a_training_that_diverges_is_one_line(tmp_path, capsys, monkeypatch, cache_dir):
    from nasfpn.proxy.heads import fcos

    monkeypatch.setattr(fcos, "detection_loss", lambda *args: {"total": torch.tensor(float("nan"))})
    _one_line_exit_2(capsys, ["train", "--neck", "fpn", "--budget", "smoke", "--out", str(tmp_path / "run"),
                              "--cache", str(cache_dir), "--no-progress"], "loss became nan")
