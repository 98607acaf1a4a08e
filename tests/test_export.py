"""Exports match the compiled module numerically: the standalone .py (no nasfpn import),
TorchScript and ONNX; the YAML export reads back to the same genotype."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

import nasfpn
from nasfpn.cli import main
from nasfpn.export.formats import export

IN_CHANNELS = [16, 24, 32]
SPACE_POINTS = [("fusion_space", 3), ("nasfpn_space", 1)]


def _maps(size=(100, 75)):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, -(-size[0] // 2 ** lv), -(-size[1] // 2 ** lv), generator=g)
            for c, lv in zip(IN_CHANNELS, (3, 4, 5))]


def _genotypes():
    cases = [(n, nasfpn.load(n)) for n in nasfpn.zoo_names("genotype")]
    cases += [(f"{s}-{k}", nasfpn.load_space(s).random_sample(k)) for s, k in SPACE_POINTS]
    return cases


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, g", _genotypes(), ids=lambda v: v if isinstance(v, str) else "")
def test_standalone_py_matches_the_compiled_neck(tmp_path, name, g):
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, 16)
    path = export(g, "py", tmp_path / "neck.py", IN_CHANNELS, 16)
    source = path.read_text()
    assert "nasfpn" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))
    module = _import(path, f"exported_{name.replace('-', '_')}")
    exported = module.ExportedNeck(IN_CHANNELS, 16)
    module.load_compiled_state_dict(exported, neck.state_dict())
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in neck.parameters())
    for mode in ("train", "eval"):
        neck.train(mode == "train")
        exported.train(mode == "train")
        xs = _maps()
        if g.feedback is None:
            a, b = neck(xs), exported(xs)
        else:  # one pass; the recursion is the backbone's business (run_pyramid in the file)
            a, b = neck(xs), exported(xs)
        assert isinstance(b, tuple) and len(b) == 5
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.slow
def test_standalone_py_runs_in_a_fresh_interpreter_without_nasfpn(tmp_path):
    export(nasfpn.load("bifpn"), "py", tmp_path / "bifpn_neck.py", [40, 112, 320])
    script = ("import sys; sys.modules['nasfpn'] = None\n"
              "import torch, bifpn_neck\n"
              "neck = bifpn_neck.ExportedNeck([40, 112, 320], 64, num_outs=5)\n"
              "outs = neck([torch.randn(1, 40, 80, 80), torch.randn(1, 112, 40, 40), torch.randn(1, 320, 20, 20)])\n"
              "print([tuple(o.shape) for o in outs])\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(1, 64, 5, 5)" in done.stdout


@pytest.mark.parametrize("name", ["nasfpn", "bifpn", pytest.param("mlfpn", marks=pytest.mark.slow)])
def test_torchscript_export_matches(tmp_path, name):
    g = nasfpn.load(name)
    torch.manual_seed(0)
    path = export(g, "torchscript", tmp_path / "neck.pt", IN_CHANNELS, 16)
    loaded = torch.jit.load(str(path))
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, 16).eval()
    loaded.eval()
    with torch.no_grad():
        for x, y in zip(neck(_maps()), loaded(_maps())):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_onnx_export_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    g = nasfpn.load("nasfpn-proxy")
    torch.manual_seed(0)
    path = export(g, "onnx", tmp_path / "neck.onnx", IN_CHANNELS, 16, image_size=128)
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, 16).eval()
    xs = _maps((128, 128))
    session = ort.InferenceSession(str(path))
    outs = session.run(None, {f"c{lv}": x[:1].numpy() for lv, x in zip((3, 4, 5), xs)})
    with torch.no_grad():
        ref = neck([x[:1] for x in xs])
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-4, atol=1e-5)


def test_export_command_yaml_and_errors(tmp_path, capsys):
    out = tmp_path / "cell.yaml"
    assert main(["export", "nasfpn", "--format", "yaml", "--out", str(out)]) == 0
    assert nasfpn.load(str(out)) == nasfpn.load("nasfpn")
    assert main(["export", "nasfpn_space", "--format", "py", "--out", str(tmp_path / "x.py")]) == 2
    assert "search space" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "py", "--out", str(tmp_path / "x.py")]) == 2
    assert "not a search run directory" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")
    assert main(["export", str(tmp_path), "--format", "py", "--out", str(tmp_path / "x.py")]) == 2
    assert "no finished trials" in capsys.readouterr().err
