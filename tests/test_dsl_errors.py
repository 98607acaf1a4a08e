"""Malformed genotype and search-space files: every mistake is a DSLError that names the file,
the line, the field path and what was wrong; the `nasfpn validate` command reports them in one
line each, with exit code 2 and no traceback."""

from __future__ import annotations

import pytest

import nasfpn
from nasfpn.cli import main as cli_main
from nasfpn.dsl import zoo_dir

# A small valid genotype; the cases below each break it in one place. Line numbers:
#   1 kind, 2 name, 3 levels, 4 channels, 5 cell:, 6 nodes:, 7..12 nodes n0..n5
BASE = """\
kind: genotype
name: t
levels: [P3, P4, P5, P6, P7]
channels: 16
cell:
  nodes:
    - {level: P4, inputs: [P4, P5]}
    - {level: P3, inputs: [P3, n0], output: true}
    - {level: P4, inputs: [n0, n1], output: true}
    - {level: P5, inputs: [P5, n2], output: true}
    - {level: P6, inputs: [P6], output: true}
    - {level: P7, inputs: [P7], output: true}
"""

SPACE = BASE.replace("kind: genotype", "kind: space")

N0 = "{level: P4, inputs: [P4, P5]}"
N2 = "{level: P4, inputs: [n0, n1], output: true}"


def edit(text: str, *pairs: str) -> str:
    """Replace each old with new exactly once (a typo in a case fails loudly, not silently)."""
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def node0(extra: str) -> str:
    """BASE with n0 rewritten as {level: P4, <extra>}."""
    return edit(BASE, N0, "{level: P4, " + extra + "}")


# (id, yaml text, field path the message names ("" for the whole file), message fragment, line)
CASES = [
    # -- the file as a whole
    ("yaml_syntax", edit(BASE, "name: t", "name: t\n  nested: oops"), "",
     "not valid YAML: mapping values are not allowed here", 3),
    ("yaml_unclosed_bracket", edit(BASE, "levels: [P3, P4, P5, P6, P7]", "levels: [P3, P4, P5, P6, P7]]"), "",
     "not valid YAML", 3),
    ("top_is_list", "- P3\n- P4\n", "", "expected a mapping of kind, name", 1),
    ("top_is_text", "just some words\n", "", "got 'just some words'", 1),
    ("empty_file", "", "", "got nothing", None),
    ("unknown_top_key", BASE + "chanels: 8\n", "chanels",
     "unknown key 'chanels' (did you mean 'channels'?)", 13),
    ("unknown_kind", edit(BASE, "kind: genotype", "kind: spaec"), "kind",
     "unknown 'spaec' (did you mean 'space'?)", 1),
    ("missing_levels", edit(BASE, "levels: [P3, P4, P5, P6, P7]\n", ""), "levels", "missing (required)", 1),
    ("missing_channels", edit(BASE, "channels: 16\n", ""), "channels", "missing (required)", 1),
    ("missing_cell", BASE.split("cell:")[0], "cell", "missing (required)", 1),
    # -- top-level fields
    ("channels_text", edit(BASE, "channels: 16", 'channels: "abc"'), "channels",
     "expected an integer, got 'abc'", 4),
    ("channels_bool", edit(BASE, "channels: 16", "channels: true"), "channels",
     "expected an integer, got true (a boolean)", 4),
    ("channels_zero", edit(BASE, "channels: 16", "channels: 0"), "channels", "must be at least 1, got 0", 4),
    ("levels_not_list", edit(BASE, "[P3, P4, P5, P6, P7]", "P3"), "levels",
     "expected a list of levels", 3),
    ("levels_gap", edit(BASE, "[P3, P4, P5, P6, P7]", "[P3, P5, P6]"), "levels",
     "levels must be consecutive and finest first", 3),
    ("levels_coarsest_first", edit(BASE, "[P3, P4, P5, P6, P7]", "[P7, P6, P5, P4, P3]"), "levels",
     "levels must be consecutive and finest first", 3),
    ("levels_bad_name", edit(BASE, "[P3, P4, P5, P6, P7]", "[P3, P4, Q5]"), "levels[2]",
     "expected a level name like P3, got 'Q5'", 3),
    # -- cell and node keys
    ("unknown_cell_key", edit(BASE, "cell:\n", "cell:\n  sum_unsued: true\n"), "cell.sum_unsued",
     "unknown key 'sum_unsued' (did you mean 'sum_unused'?)", 6),
    ("unknown_node_key", edit(BASE, "inputs: [P3, n0], output: true", "inputs: [P3, n0], outptu: true"),
     "cell.nodes[1].outptu", "unknown key 'outptu' (did you mean 'output'?)", 8),
    ("unknown_stem_key", edit(BASE, "cell:\n", "stem:\n  laterals: [conv1x1]\ncell:\n"), "stem.laterals",
     "unknown key 'laterals' (did you mean 'lateral'?)", 6),
    ("missing_node_level", edit(BASE, "{level: P3, inputs: [P3, n0], output: true}",
                                "{inputs: [P3, n0], output: true}"),
     "cell.nodes[1].level", "missing (required)", 8),
    ("missing_node_inputs", node0("output: false"), "cell.nodes[0].inputs", "missing (required)", 7),
    ("missing_nodes", edit(BASE, BASE[BASE.index("  nodes:"):], "  repeats: 2\n"), "cell.nodes",
     "missing (required)", 5),
    ("null_nodes", BASE[:BASE.index("  nodes:")] + "  nodes:\n", "cell.nodes",
     "expected a list of nodes, got nothing", 6),
    ("empty_nodes", BASE[:BASE.index("  nodes:")] + "  nodes: []\n", "cell.nodes",
     "a cell needs at least one node", 6),
    ("node_not_mapping", edit(BASE, "    - " + N0, "    - P4"), "cell.nodes[0]",
     "expected a mapping of level, inputs", 7),
    ("post_is_text", node0("inputs: [P4, P5], post: relu"), "cell.nodes[0].post",
     "expected a list of ops, got 'relu'", 7),
    ("output_is_text", node0('inputs: [P4, P5], output: "yes"'), "cell.nodes[0].output",
     "expected true or false, got 'yes'", 7),
    ("repeats_zero", edit(BASE, "cell:\n", "cell:\n  repeats: 0\n"), "cell.repeats",
     "must be at least 1, got 0", 6),
    ("feedback_one_step", BASE + "feedback: {steps: 1}\n", "feedback.steps", "must be at least 2, got 1", 13),
    # -- levels and references
    ("level_out_of_range", edit(BASE, "{level: P6, inputs: [P6]", "{level: P8, inputs: [P6]"),
     "cell.nodes[4].level", "level P8 is out of range: this pyramid has P3..P7", 11),
    ("level_is_number", node0("level: 4, inputs: [P4, P5]").replace("level: P4, level: 4", "level: 4"),
     "cell.nodes[0].level", "expected a level name like P3, got 4 (a number)", 7),
    ("unknown_feature", edit(BASE, "{level: P5, inputs: [P5, n2]", "{level: P5, inputs: [P5, n9]"),
     "cell.nodes[3].inputs[1]",
     "unknown feature 'n9' (expected one of: P3, P4, P5, P6, P7, n0, n1, n2)", 10),
    ("unknown_feature_near_miss", edit(BASE, "inputs: [P4, P5]", "inputs: [P4, P55]"),
     "cell.nodes[0].inputs[1]", "unknown feature 'P55' (did you mean 'P5'?)", 7),
    ("not_a_feature_name", edit(BASE, "inputs: [P4, P5]", "inputs: [P4, x1]"),
     "cell.nodes[0].inputs[1]", "expected a feature name (P3.., s0.., n0..), got 'x1'", 7),
    ("later_node", edit(BASE, N2, "{level: P4, inputs: [n0, n3], output: true}"),
     "cell.nodes[2].inputs[1]", "'n3' is defined after this node", 9),
    ("self_reference", edit(BASE, N2, "{level: P4, inputs: [n0, n2], output: true}"),
     "cell.nodes[2].inputs[1]", "a node cannot take itself ('n2') as input", 9),
    ("duplicate_inputs", edit(BASE, N2, "{level: P4, inputs: [n1, n1], output: true}"),
     "cell.nodes[2].inputs[1]", "duplicate input 'n1'", 9),
    ("no_inputs", edit(BASE, "inputs: [P4, P5]", "inputs: []"), "cell.nodes[0].inputs",
     "a node needs at least one input", 7),
    ("stem_uses_cell_node", edit(BASE, "cell:\n", "stem:\n  nodes:\n    - {level: P3, inputs: [P3, n0]}\ncell:\n"),
     "stem.nodes[0].inputs[1]", "'n0' is a cell node: stem nodes see only P-levels", 7),
    ("stem_node_output", edit(BASE, "cell:\n", "stem:\n  nodes:\n"
                                               "    - {level: P3, inputs: [P3, P4], output: true}\ncell:\n"),
     "stem.nodes[0].output", "stem nodes cannot be outputs", 7),
    # -- vocabulary
    ("unknown_combine", node0("inputs: [P4, P5], combine: global_atention"), "cell.nodes[0].combine",
     "unknown 'global_atention' (did you mean 'global_attention'?)", 7),
    ("combine_not_text", node0("inputs: [P4, P5], combine: 3"), "cell.nodes[0].combine",
     "expected a name (expected one of: sum, global_attention", 7),
    ("unknown_fusion", node0("inputs: [P4, P5], fusion: fast_normalised"), "cell.nodes[0].fusion",
     "unknown 'fast_normalised' (did you mean 'fast_normalized'?)", 7),
    ("unknown_post_op", node0("inputs: [P4, P5], post: [relu, conv3x3, batchnorm]"), "cell.nodes[0].post[2]",
     "unknown 'batchnorm' (expected one of: relu, swish", 7),
    ("unknown_upsample", node0("inputs: [P4, P5], upsample: bicubic"), "cell.nodes[0].upsample",
     "unknown 'bicubic' (expected one of: nearest, bilinear)", 7),
    ("unknown_downsample", node0("inputs: [P4, P5], downsample: stride"), "cell.nodes[0].downsample",
     "unknown 'stride' (expected one of: maxpool, avgpool, conv)", 7),
    ("unknown_lateral_op", edit(BASE, "cell:\n", "stem:\n  lateral: [conv1x1, bnn]\ncell:\n"),
     "stem.lateral[1]", "unknown 'bnn' (did you mean 'bn'?)", 6),
    ("unknown_default", edit(BASE, "cell:\n", "defaults:\n  combine: summ\ncell:\n"), "defaults.combine",
     "unknown 'summ' (did you mean 'sum'?)", 6),
    ("level_in_defaults", edit(BASE, "cell:\n", "defaults:\n  level: P4\ncell:\n"), "defaults.level",
     "unknown key 'level'", 6),
    # -- rules that span fields of one node
    ("attention_three_inputs", node0("inputs: [P4, P5, P6], combine: global_attention"),
     "cell.nodes[0].inputs", "combine 'global_attention' takes exactly 2 inputs, got 3", 7),
    ("mmdet_attention_one_input", node0("inputs: [P4], combine: global_attention_mmdet"),
     "cell.nodes[0].inputs", "combine 'global_attention_mmdet' takes exactly 2 inputs, got 1", 7),
    ("fusion_with_concat", node0("inputs: [P4, P5], combine: concat, fusion: softmax"),
     "cell.nodes[0].fusion", "fusion 'softmax' weights a sum: it needs combine 'sum', not 'concat'", 7),
    ("fusion_one_input", node0("inputs: [P4], fusion: fast_normalized"), "cell.nodes[0].fusion",
     "fusion 'fast_normalized' needs at least 2 inputs, got 1", 7),
    ("concat_one_input", node0("inputs: [P4], combine: concat"), "cell.nodes[0].inputs",
     "combine 'concat' needs at least 2 inputs", 7),
    # -- blocks
    ("unknown_block", node0("inputs: [P4], block: pyramid_pooling"), "cell.nodes[0].block",
     "unknown 'pyramid_pooling' (expected one of: residual_augmentation)", 7),
    ("block_param_out_of_range", node0("inputs: [P4], block: residual_augmentation, params: {ratios: [0.1, 1.5]}"),
     "cell.nodes[0].params.ratios", "expected a non-empty list of numbers in (0, 1]", 7),
    ("block_param_unknown", node0("inputs: [P4], block: residual_augmentation, params: {ratio: [0.1]}"),
     "cell.nodes[0].params.ratio", "unknown parameter 'ratio' for block 'residual_augmentation' "
     "(did you mean 'ratios'?)", 7),
    ("block_two_inputs", node0("inputs: [P4, P5], block: residual_augmentation"), "cell.nodes[0].inputs",
     "block 'residual_augmentation' takes exactly 1 input, got 2", 7),
    ("block_with_combine", node0("inputs: [P4], block: residual_augmentation, combine: sum"),
     "cell.nodes[0].combine", "a block node has no 'combine'", 7),
    ("params_without_block", node0("inputs: [P4, P5], params: {ratios: [0.5]}"), "cell.nodes[0].params",
     "params are only for block nodes", 7),
    # -- outputs
    ("output_level_missing", edit(BASE, "{level: P5, inputs: [P5, n2], output: true}",
                                  "{level: P5, inputs: [P5, n2]}"),
     "cell.nodes", "no output node at level P5", 6),
    ("two_outputs_same_level", edit(BASE, "{level: P5, inputs: [P5, n2], output: true}",
                                    "{level: P4, inputs: [P5, n2], output: true}"),
     "cell.nodes[3].level", "two output nodes at level P4 (n2 and n3)", 10),
    ("outputs_last",
     edit(BASE, "cell:\n", "cell:\n  outputs_last: true\n") + "    - {level: P4, inputs: [P4, n5]}\n",
     "cell.nodes[1].output", "outputs_last: the last 5 nodes must be the outputs", 9),
    ("intermediate_not_finest", edit(BASE, "cell:\n", "cell:\n  intermediate_not_finest: true\n",
                                     N0, "{level: P3, inputs: [P4, P5]}"),
     "cell.nodes[0].level", "intermediate_not_finest: an intermediate node may not be at the finest level P3", 8),
    # -- choices
    ("choice_in_genotype", edit(BASE, "channels: 16", "channels: {choice: [8, 16]}"), "channels",
     "choices are only allowed in a search space (add `kind: space`)", 4),
    ("pick_in_genotype", edit(BASE, "inputs: [P4, P5]", "inputs: {pick: 2}"), "cell.nodes[0].inputs",
     "choices are only allowed in a search space", 7),
    ("permutation_in_genotype",
     edit(BASE, "{level: P6, inputs: [P6]", "{level: {permutation: [P6, P7]}, inputs: [P6]"),
     "cell.nodes[4].level", "choices are only allowed in a search space", 11),
    ("choice_no_options", edit(SPACE, "channels: 16", "channels: {choice: []}"), "channels.choice",
     "a choice needs at least one option", 4),
    ("choice_not_list", edit(SPACE, "channels: 16", "channels: {choice: 8}"), "channels.choice",
     "expected a list of options, got 8 (a number)", 4),
    ("choice_bad_option", edit(SPACE, "inputs: [P4, P5]}", "inputs: [P4, P5], combine: {choice: [sum, mul]}}"),
     "cell.nodes[0].combine.choice[1]", "unknown 'mul'", 7),
    ("range_low_above_high", edit(SPACE, "channels: 16", "channels: {range: [16, 8]}"), "channels.range",
     "empty range: low 16 > high 8", 4),
    ("range_not_allowed", edit(SPACE, "inputs: [P4, P5]}", "inputs: [P4, P5], combine: {range: [1, 2]}}"),
     "cell.nodes[0].combine", "'range' is not allowed here (only `choice`)", 7),
    ("pick_more_than_pool", edit(SPACE, "inputs: [P4, P5]", "inputs: {pick: 3, from: [P4, P5]}"),
     "cell.nodes[0].inputs.pick", "cannot pick 3 distinct inputs from 2", 7),
    ("pick_unavailable", edit(SPACE, "inputs: [P4, P5]", "inputs: {pick: 2, from: [P4, n1]}"),
     "cell.nodes[0].inputs.from", "'n1' is not available to this node", 7),
    ("pick_zero", edit(SPACE, "inputs: [P4, P5]", "inputs: {pick: 0}"), "cell.nodes[0].inputs.pick",
     "expected a positive integer, got 0 (a number)", 7),
    ("permutation_size_mismatch",
     edit(SPACE, "{level: P6, inputs: [P6]", "{level: {permutation: [P5, P6, P7]}, inputs: [P6]",
          "{level: P7, inputs: [P7]", "{level: {permutation: [P5, P6, P7]}, inputs: [P7]"),
     "cell.nodes[4].level.permutation", "2 node(s) share a permutation of 3 levels (P5, P6, P7)", 11),
    ("permutation_repeats_level",
     edit(SPACE, "{level: P6, inputs: [P6]", "{level: {permutation: [P6, P6]}, inputs: [P6]"),
     "cell.nodes[4].level.permutation", "levels in a permutation must be distinct", 11),
    ("space_yields_invalid_point", edit(SPACE, N0, "{level: P4, inputs: [P4, P5, P6], "
                                                   "combine: {choice: [sum, global_attention]}}"),
     "cell.nodes[0].inputs", "the space can produce an invalid genotype: combine 'global_attention' takes "
     "exactly 2 inputs, got 3 (for example when cell.nodes[0].combine=global_attention)", 7),
]

# Hostile and careless files: expansion, recursion, nesting, duplicates, values that pass a type
# check but could never be built (the limits are in nasfpn/dsl/limits.py and yaml_reader.py).
BOMB = 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]\n' + "".join(
    f"{c}: &{c} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))
ALIAS_CHAIN = "a0: &a0 [x]\n" + "".join(f"a{k}: &a{k} [*a{k - 1}]\n" for k in range(1, 40))
MANY_NODES = "".join("    - {level: P4, inputs: [P4]}\n" for _ in range(59))

CASES += [
    ("billion_laughs", BOMB, "e", "the document expands to more than 50000 values (aliases multiply it; "
     "limit MAX_YAML_NODES)", 5),
    ("alias_chain_too_deep", ALIAS_CHAIN, "a30[0]", "aliases expand it to more than 32 levels of nesting "
     "(limit MAX_YAML_DEPTH)", 30),
    ("recursive_alias", edit(BASE, "cell:\n", "cell: &c\n  repeats: *c\n"), "cell.repeats",
     "an alias refers to a value that contains it (a recursive alias)", 5),
    ("recursive_alias_in_list", "kind: genotype\ncell: &c\n  nodes: [*c]\n", "cell.nodes[0]",
     "a recursive alias", 2),
    ("nested_too_deep", edit(BASE, "channels: 16", "channels: " + "[" * 5000 + "]" * 5000), "",
     "nested more than 32 levels deep (limit MAX_YAML_DEPTH)", 4),
    ("file_too_large", BASE + "# padding\n" * 120_000, "", "larger than the limit of 1 MiB (MAX_YAML_BYTES)",
     None),
    ("duplicate_top_key", BASE + "channels: 32\n", "channels",
     "key 'channels' is given twice (lines 4 and 13): remove one", 13),
    ("duplicate_node_key", node0("inputs: [P4, P5], inputs: [P4]"), "cell.nodes[0].inputs",
     "key 'inputs' is given twice (lines 7 and 7)", 7),
    ("duplicate_cell_key", edit(BASE, "cell:\n", "cell:\n  repeats: 2\n  repeats: 3\n"), "cell.repeats",
     "key 'repeats' is given twice (lines 6 and 7)", 7),
    ("params_mixed_key_types", node0("inputs: [P4], block: residual_augmentation, params: {ratios: [0.1], 1: 2}"),
     "cell.nodes[0].params", "parameter names must be text, got 1 (a number)", 7),
    ("integer_too_long", edit(BASE, "channels: 16", "channels: " + "9" * 5000), "",
     "a value cannot be read: Exceeds the limit (4300 digits)", None),
    ("two_documents", BASE + "---\nkind: genotype\n", "", "not valid YAML: but found another document", 13),
    ("python_tag", BASE + "x: !!python/object/apply:os.system ['echo hi']\n", "",
     "not valid YAML: could not determine a constructor for the tag", 13),
    ("channels_in_the_billions", edit(BASE, "channels: 16", "channels: 1000000000000"), "channels",
     "must be at most 2048 (MAX_CHANNELS), got 1000000000000", 4),
    ("repeats_in_the_billions", edit(BASE, "cell:\n", "cell:\n  repeats: 1000000000\n"), "cell.repeats",
     "must be at most 32 (MAX_REPEATS)", 6),
    ("feedback_steps_in_the_billions", BASE + "feedback: {steps: 1000000000}\n", "feedback.steps",
     "must be at most 8 (MAX_FEEDBACK_STEPS)", 13),
    ("dilation_in_the_billions", BASE + "feedback: {aspp_dilations: [1, 1000000000]}\n",
     "feedback.aspp_dilations[1]", "must be at most 64 (MAX_DILATION)", 13),
    ("dilation_zero", BASE + "feedback: {aspp_dilations: [0]}\n", "feedback.aspp_dilations[0]",
     "must be at least 1, got 0", 13),
    ("ratios_too_many", node0("inputs: [P4], block: residual_augmentation, params: {ratios: ["
                              + ", ".join(["0.1"] * 17) + "]}"),
     "cell.nodes[0].params.ratios", "at most 16 entries (MAX_LIST), got 17", 7),
    ("post_ops_too_many", node0("inputs: [P4, P5], post: [" + ", ".join(["relu"] * 17) + "]"),
     "cell.nodes[0].post", "at most 16 entries (MAX_OPS), got 17", 7),
    ("nodes_too_many", BASE + MANY_NODES, "cell.nodes", "at most 64 entries (MAX_NODES), got 65", 6),
    ("neck_too_large_to_build", edit(BASE, "channels: 16", "channels: 2048", "cell:\n", "cell:\n  repeats: 32\n"),
     "cell", "too large to build: up to 1.93e+10 weights at 2048 channels x 32 stack(s) of 6 nodes "
     "(over MAX_NECK_WEIGHT_BOUND = 4e+09)", 5),
    ("channels_range_in_the_billions", edit(SPACE, "channels: 16", "channels: {range: [1, 1000000000]}"),
     "channels.range", "must be at most 2048 (MAX_CHANNELS), got 1000000000", 4),
    ("repeats_range_in_the_billions", edit(SPACE, "cell:\n", "cell:\n  repeats: {range: [1, 1000000000]}\n"),
     "cell.repeats.range", "must be at most 32 (MAX_REPEATS)", 6),
    ("pick_range_in_the_billions", edit(SPACE, "inputs: [P4, P5]", "inputs: {pick: {range: [1, 1000000000]}}"),
     "cell.nodes[0].inputs.pick", "cannot pick 1000000000 distinct inputs from 5", 7),
]

EXPECTED_PROBLEMS = {"two_outputs_same_level": 2}


def _write(tmp_path, case_id: str, text: str):
    path = tmp_path / f"case_{case_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_base_files_are_valid():
    """Every case breaks a file that is valid on its own, so each error is the case's own."""
    g = nasfpn.from_yaml(BASE)
    assert [n.output for n in g.cell.nodes] == [False] + [True] * 5
    assert isinstance(nasfpn.from_yaml(SPACE), nasfpn.SearchSpace)


def test_at_least_forty_kinds():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id, text, path, fragment, line", CASES, ids=[c[0] for c in CASES])
def test_malformed_file(tmp_path, case_id, text, path, fragment, line):
    file = _write(tmp_path, case_id, text)
    with pytest.raises(nasfpn.DSLError) as info:
        nasfpn.read(file)
    message = str(info.value)
    # One line of the message carries all of: the file (and line), the field path, the fragment.
    where = f"{file}:{line}: " if line is not None else f"{file}: "
    field = f"{path}: " if path else ""
    matching = [ln for ln in message.splitlines()
                if ln.startswith(where + field) and fragment in ln]
    assert matching, f"no line starts with {where + field!r} and contains {fragment!r}:\n{message}"
    assert file.name in message
    assert "Traceback" not in message
    assert any(p.path == path for p in info.value.problems)
    # One mistake, one line: no follow-on noise (two outputs at P4 also leave P5 without one).
    assert len(info.value.problems) == EXPECTED_PROBLEMS.get(case_id, 1), message
    assert info.value.source == str(file)


def test_three_independent_mistakes_are_reported_together(tmp_path):
    text = edit(BASE, "channels: 16", 'channels: "abc"',
                "cell:\n", "cell:\n  repeats: 0\n",
                "inputs: [P4, P5]}", "inputs: [P4, P5], combine: global_atention}")
    file = _write(tmp_path, "three", text)
    with pytest.raises(nasfpn.DSLError) as info:
        nasfpn.read(file)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert [p.path for p in info.value.problems] == ["channels", "cell.repeats", "cell.nodes[0].combine"]
    assert [p.line for p in info.value.problems] == [4, 6, 8]
    assert all(ln.startswith(str(file)) for ln in lines)


def test_three_mistakes_across_nodes_are_reported_together(tmp_path):
    """The checks that span fields (references, arity, outputs) also report every problem."""
    text = edit(BASE, N0, "{level: P4, inputs: [P4, P5, P6], combine: global_attention}",
                N2, "{level: P4, inputs: [n0, n2], output: true}",
                "{level: P5, inputs: [P5, n2]", "{level: P5, inputs: [P5, n9]")
    file = _write(tmp_path, "three_spanning", text)
    with pytest.raises(nasfpn.DSLError) as info:
        nasfpn.read(file)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert {p.path for p in info.value.problems} == {"cell.nodes[0].inputs", "cell.nodes[2].inputs[1]",
                                                     "cell.nodes[3].inputs[1]"}
    assert sorted(p.line for p in info.value.problems) == [7, 9, 10]


def test_yaml_error_in_text_names_the_line_of_the_text():
    with pytest.raises(nasfpn.DSLError, match=r"^<genotype>:2: not valid YAML"):
        nasfpn.from_yaml("levels: [P3, P4\n")


def test_unknown_zoo_name_suggests_the_closest():
    with pytest.raises(nasfpn.DSLError, match=r"no zoo entry or file named 'nasfpm' \(did you mean 'nasfpn'\?\)"):
        nasfpn.read("nasfpm")


def test_load_and_load_space_reject_the_other_kind():
    with pytest.raises(nasfpn.DSLError, match=r"kind: this is a search space, not a genotype"):
        nasfpn.load("nasfpn_space")
    with pytest.raises(nasfpn.DSLError, match=r"kind: this is a genotype, not a search space"):
        nasfpn.load_space("nasfpn")


# ----------------------------------------------------------------------------- the CLI
ZOO_FILES = sorted(zoo_dir().glob("*.yaml"))


def test_zoo_folder_is_not_empty():
    assert len(ZOO_FILES) >= 10


@pytest.mark.parametrize("file", ZOO_FILES, ids=[f.stem for f in ZOO_FILES])
def test_validate_accepts_every_shipped_file(capsys, file):
    assert cli_main(["validate", str(file)]) == 0
    out, err = capsys.readouterr()
    assert out.strip().startswith(f"{file}: ok")
    assert err == ""


def test_validate_many_files_at_once(capsys):
    assert cli_main(["validate", *map(str, ZOO_FILES)]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == len(ZOO_FILES)
    assert all(": ok (" in ln for ln in out.splitlines())


def test_validate_reports_a_broken_file_on_one_line(tmp_path, capsys):
    file = _write(tmp_path, "broken", node0("inputs: [P4, P5], combine: global_atention"))
    assert cli_main(["validate", str(file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"{file}:7: cell.nodes[0].combine: unknown 'global_atention' "
                                "(did you mean 'global_attention'?)"]
    assert "Traceback" not in err


def test_validate_goes_on_after_a_broken_file(tmp_path, capsys):
    file = _write(tmp_path, "broken", edit(BASE, "channels: 16", "channels: 0"))
    good = zoo_dir() / "fpn.yaml"
    assert cli_main(["validate", str(file), str(good)]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == f"{good}: ok (genotype)"
    assert err.splitlines() == [f"{file}:4: channels: must be at least 1, got 0"]


def test_validate_missing_file(tmp_path, capsys):
    missing = tmp_path / "does_not_exist.yaml"
    assert cli_main(["validate", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert str(missing) in err
    assert "no such file" in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_validate_unknown_zoo_name(capsys):
    assert cli_main(["validate", "bifnp"]) == 2
    _, err = capsys.readouterr()
    assert "bifnp" in err and "did you mean 'bifpn'" in err
    assert "Traceback" not in err
