"""The op registry is the one place an op lives: every entry validates in the DSL, compiles,
scripts, draws, exports standalone and matches the compiled module numerically. A new entry is
walked here without touching this file."""

import importlib.util

import pytest
import torch

import nasfpn
from nasfpn.dsl import vocab
from nasfpn.export.draw import draw_cell
from nasfpn.export.standalone import standalone_source
from nasfpn.ops import registry

IN_CHANNELS = [16, 16]  # P3, P4 from the backbone; P5 is an extra level


def _probe(op) -> dict:
    """The smallest genotype that uses `op`: n0 at P4 merges P4 and P5 (an upsample), n1 at P3,
    n2 at P4 reads n1 (a downsample), n3 at P5; n1..n3 are the outputs."""
    n0 = {"level": "P4", "inputs": ["P4", "P5"]}
    defaults = {"post": ["conv3x3", "bn"]}
    stem = {"lateral": ["conv1x1"], "lateral_when": "always", "extra": "conv", "extra_source": "input"}
    cell = {"repeats": 1}
    g = {"kind": "genotype", "name": f"probe-{op.kind}-{op.name}", "levels": ["P3", "P4", "P5"], "channels": 16}
    if op.kind == "combine":
        n0["combine"] = op.name
    elif op.kind == "fusion":
        n0["fusion"] = op.name
    elif op.kind == "block":
        n0 = {"level": "P4", "inputs": ["P4", "P5"][: op.arity.low], "block": op.name}
    elif op.kind in ("upsample", "downsample"):
        defaults[op.kind] = op.name
    elif op.kind == "post":
        defaults["post"] = ["conv3x3", op.name] if op.role != "conv" else [op.name]
    elif op.kind == "extra":
        stem["extra"] = op.name
    elif op.kind == "aggregate":
        cell = {"repeats": 2, "aggregate": op.name}
    elif op.kind == "feedback_fusion":
        g["feedback"] = {"steps": 2, "aspp_dilations": [1, 2], "fusion": op.name}
    cell["nodes"] = [n0, {"level": "P3", "inputs": ["P3", "n0"], "output": True},
                     {"level": "P4", "inputs": ["n0", "n1"], "output": True},
                     {"level": "P5", "inputs": ["P5", "n2"], "output": True}]
    return {**g, "stem": stem, "defaults": defaults, "cell": cell}


def _maps():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(2, 16, 17, 13, generator=gen), torch.randn(2, 16, 9, 7, generator=gen)]


def _backbone(maps):
    """A stand-in backbone with the feedback hook: adds the fed-back maps to its own."""
    def run(images, feedback=None):
        return maps if feedback is None else [m + f for m, f in zip(maps, feedback)]
    return run


def _import(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENTRIES = registry.entries()


def test_every_op_word_of_the_dsl_is_a_registry_entry_and_back():
    for kind, table in vocab.TABLES.items():
        assert set(table) == {op.name for op in registry.entries(kind)}, kind
    assert len(ENTRIES) == sum(len(t) for t in vocab.TABLES.values())
    assert vocab.CONV_OPS == {op.name for op in registry.entries("post") if op.role == "conv"}


def test_registering_a_word_twice_is_refused():
    op = registry.get("combine", "sum")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(op)


@pytest.mark.parametrize("op", ENTRIES, ids=lambda op: f"{op.kind}-{op.name}")
def test_each_entry_validates_compiles_draws_and_exports_to_the_same_numbers(op, tmp_path):
    g = nasfpn.from_dict(_probe(op))
    assert op.about and op.label
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, 16)
    torch.jit.script(neck.graph)
    draw_cell(g, tmp_path / "cell.png")
    path = tmp_path / f"probe_{op.kind}_{op.name}.py"
    path.write_text(standalone_source(g, IN_CHANNELS, 16))
    module = _import(path)
    exported = module.ExportedNeck(IN_CHANNELS, 16)
    module.load_compiled_state_dict(exported, neck.state_dict())
    for mode in (True, False):
        neck.train(mode)
        exported.train(mode)
        maps = _maps()
        if g.feedback is None:
            want, got = neck(maps), exported(maps)
        else:
            want = nasfpn.run_pyramid(_backbone(maps), neck, None)
            got = module.run_pyramid(_backbone(maps), exported, None)
        assert len(got) == 3
        for a, b in zip(want, got):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_ops_doc_lists_every_entry_under_its_kind():
    from pathlib import Path

    rows = [line.split("|") for line in (Path(__file__).parent.parent / "docs" / "ops.md").read_text().splitlines()
            if line.startswith("| `")]
    listed: dict[str, set[str]] = {}
    for row in rows:
        kinds = [k.strip(" `") for k in row[1].split(",")]
        names = {n.strip(" `;") for n in row[4].replace(";", ",").split(",") if n.strip(" `;")}
        listed[",".join(kinds)] = names
    for kinds, names in listed.items():
        assert names == {op.name for kind in kinds.split(",") for op in registry.entries(kind)}, kinds
    assert {k for ks in listed for k in ks.split(",")} == set(registry.KINDS)
