"""YAML text -> checked template -> Genotype (or SearchSpace).

Reading happens in two passes so that genotypes and spaces share one grammar:
1. `read_template` checks every field's type and vocabulary and returns a template: plain
   normalized values, where a space may hold choice markers (see `choices.py`);
2. `assemble` turns a template without choices (a genotype file, or a sampled point of a space)
   into a Genotype and checks what spans fields: references, levels, the output rules.
Every problem names its field path; all problems of a file are reported together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from . import vocab
from .choices import Categorical, IntRange, Permutation, Pick, is_marker
from .errors import DSLError, Problem, did_you_mean
from .schema import (DEFAULTABLE_FIELDS, FEATURE_RE, LEVEL_RE, NODE_DEFAULTS, Cell, Feedback,
                     Genotype, Node, Stem, level_name)

_BAD = object()  # a field that failed its check; the problem is already recorded

TOP_KEYS = ("kind", "name", "paper", "description", "levels", "channels", "stem", "defaults",
            "cell", "feedback")
STEM_KEYS = ("lateral", "lateral_when", "extra", "extra_source", "extra_relu", "nodes")
CELL_KEYS = ("nodes", "repeats", "share_weights", "sum_unused", "outputs_last",
             "intermediate_not_finest", "aggregate")
FEEDBACK_KEYS = ("steps", "aspp_dilations", "fusion")
NODE_KEYS = ("level", "inputs", "combine", "fusion", "upsample", "downsample", "post", "output",
             "block", "params")


# ----------------------------------------------------------------------------- YAML with lines
def _line_map(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            out[child] = key.start_mark.line + 1
            _line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, f"{path}[{i}]", out)


def load_yaml(path: str | Path) -> tuple[Any, dict[str, int]]:
    """Safe-load a file; also return field path -> line number for error messages."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DSLError([Problem("", "no such file")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DSLError([Problem("", f"cannot read the file: {exc}")], source) from None
    try:
        composed = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DSLError([Problem("", f"not valid YAML: {what}", line)], source) from None
    lines: dict[str, int] = {}
    if composed is not None:
        _line_map(composed, "", lines)
    return data, lines


# ----------------------------------------------------------------------------- pass 1: template
class _Reader:
    def __init__(self, lines: dict[str, int] | None, allow_choices: bool):
        self.lines = lines or {}
        self.allow_choices = allow_choices
        self.problems: list[Problem] = []
        self.levels: tuple[int, ...] = ()

    # -- bookkeeping
    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, _line_of(path, self.lines)))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of {', '.join(allowed)}, got {_kind(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.error(_join(path, key), f"unknown key '{key}'{did_you_mean(key, allowed)}")
        for key in required:
            if key not in value:
                self.error(_join(path, key), "missing (required)")
        return value

    def field(self, value: Any, path: str, check: Callable[[Any, str], Any],
              ranges: bool = False) -> Any:
        """Check a value, or each option of a choice marker when this is a space."""
        if not is_marker(value):
            return check(value, path)
        if not self.allow_choices:
            self.error(path, "choices are only allowed in a search space (add `kind: space`)")
            return _BAD
        if ranges and "range" in value:
            return self.int_range(value, path)
        if "choice" in value:
            if set(value) != {"choice"}:
                self.error(path, f"a choice takes only the key 'choice', got {sorted(value)}")
                return _BAD
            options = value["choice"]
            if not isinstance(options, list):
                self.error(_join(path, "choice"), f"expected a list of options, got {_kind(options)}")
                return _BAD
            if not options:
                self.error(_join(path, "choice"), "a choice needs at least one option")
                return _BAD
            checked = [check(opt, f"{path}.choice[{i}]") for i, opt in enumerate(options)]
            if any(c is _BAD for c in checked):
                return _BAD
            return Categorical(tuple(checked))
        marker = next(m for m in ("range", "pick", "permutation") if m in value)
        self.error(path, f"'{marker}' is not allowed here"
                   + (" (only `choice`)" if not ranges else " (only `choice` or `range`)"))
        return _BAD

    def int_range(self, value: dict, path: str) -> Any:
        extra = set(value) - {"range", "step"}
        if extra:
            self.error(path, f"a range takes 'range' and 'step', got unknown {sorted(extra)}")
            return _BAD
        bounds, step = value["range"], value.get("step", 1)
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(_is_int(b) for b in bounds)):
            self.error(_join(path, "range"), "expected [low, high] with two integers")
            return _BAD
        if not _is_int(step) or step < 1:
            self.error(_join(path, "step"), f"expected a positive integer, got {step!r}")
            return _BAD
        low, high = bounds
        if low > high:
            self.error(_join(path, "range"), f"empty range: low {low} > high {high}")
            return _BAD
        return IntRange(low, high, step)

    # -- value checks: each returns the normalized value or _BAD
    def enum(self, table: dict[str, str]) -> Callable[[Any, str], Any]:
        def check(value: Any, path: str) -> Any:
            if not isinstance(value, str):
                self.error(path, f"expected a name{did_you_mean('', table)}, got {_kind(value)}")
                return _BAD
            if value not in table:
                self.error(path, f"unknown '{value}'{did_you_mean(value, table)}")
                return _BAD
            return value
        return check

    def boolean(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {_kind(value)}")
            return _BAD
        return value

    def integer(self, minimum: int) -> Callable[[Any, str], Any]:
        def check(value: Any, path: str) -> Any:
            if not _is_int(value):
                self.error(path, f"expected an integer, got {_kind(value)}")
                return _BAD
            if value < minimum:
                self.error(path, f"must be at least {minimum}, got {value}")
                return _BAD
            return value
        return check

    def text(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            self.error(path, f"expected text, got {_kind(value)}")
            return _BAD
        return value

    def level(self, value: Any, path: str) -> Any:
        match = LEVEL_RE.match(value) if isinstance(value, str) else None
        if not match:
            self.error(path, f"expected a level name like P3, got {_kind(value)}")
            return _BAD
        lv = int(match.group(1))
        if self.levels and lv not in self.levels:
            names = [level_name(x) for x in self.levels]
            self.error(path, f"level {value} is out of range: this pyramid has {names[0]}..{names[-1]}")
            return _BAD
        return lv

    def op_list(self, table: dict[str, str]) -> Callable[[Any, str], Any]:
        def check(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                self.error(path, f"expected a list of ops, got {_kind(value)}")
                return _BAD
            items = [self.enum(table)(op, f"{path}[{i}]") for i, op in enumerate(value)]
            return _BAD if any(i is _BAD for i in items) else tuple(items)
        return check

    def feature_names(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            self.error(path, f"expected a list of feature names like [P4, n0], got {_kind(value)}")
            return _BAD
        if not value:
            self.error(path, "a node needs at least one input")
            return _BAD
        names, ok = [], True
        for i, name in enumerate(value):
            if not isinstance(name, str) or not FEATURE_RE.match(name):
                self.error(f"{path}[{i}]", f"expected a feature name (P3.., s0.., n0..), got {_kind(name)}")
                ok = False
            elif name in names:
                self.error(f"{path}[{i}]", f"duplicate input '{name}': each input may appear once")
                ok = False
            names.append(name)
        return tuple(names) if ok else _BAD

    # -- sections
    def document(self, data: Any) -> dict | None:
        top = self.mapping(data, "", TOP_KEYS, required=("levels", "channels", "cell"))
        if top is None:
            return None
        out: dict[str, Any] = {}
        out["kind"] = top.get("kind", "genotype")
        if self.enum({k: "" for k in vocab.KINDS})(out["kind"], "kind") is _BAD:
            return None
        self.allow_choices = out["kind"] == "space"
        for key in ("name", "paper", "description"):
            if key in top:
                out[key] = self.text(top[key], key)
        if "levels" in top:
            out["levels"] = self.level_list(top["levels"], "levels")
        if "channels" in top:
            out["channels"] = self.field(top["channels"], "channels", self.integer(1), ranges=True)
        out["stem"] = self.stem(top.get("stem", {}), "stem")
        out["defaults"] = self.defaults(top.get("defaults", {}), "defaults")
        if "cell" in top:
            out["cell"] = self.cell(top["cell"], "cell")
        if top.get("feedback") is not None:
            out["feedback"] = self.feedback(top["feedback"], "feedback")
        return out

    def level_list(self, value: Any, path: str) -> Any:
        if not isinstance(value, list) or not value:
            self.error(path, f"expected a list of levels like [P3, P4, P5, P6, P7], got {_kind(value)}")
            return _BAD
        levels = [self.level(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if any(lv is _BAD for lv in levels):
            return _BAD
        if levels != list(range(levels[0], levels[0] + len(levels))):
            self.error(path, "levels must be consecutive and finest first, e.g. [P3, P4, P5, P6, P7]")
            return _BAD
        self.levels = tuple(levels)
        return self.levels

    def stem(self, value: Any, path: str) -> dict:
        raw = self.mapping(value, path, STEM_KEYS) or {}
        out: dict[str, Any] = {}
        checks = {"lateral": self.op_list(vocab.POST_OPS), "lateral_when": self.enum(vocab.LATERAL_WHEN),
                  "extra": self.enum(vocab.EXTRA), "extra_source": self.enum(vocab.EXTRA_SOURCE),
                  "extra_relu": self.boolean}
        for key, check in checks.items():
            if key in raw:
                out[key] = self.field(raw[key], _join(path, key), check)
        out["nodes"] = self.node_list(raw.get("nodes", []), _join(path, "nodes"), allow_empty=True)
        return out

    def defaults(self, value: Any, path: str) -> dict:
        raw = self.mapping(value, path, DEFAULTABLE_FIELDS) or {}
        return {k: self.node_field(k, v, _join(path, k)) for k, v in raw.items()
                if k in DEFAULTABLE_FIELDS}

    def cell(self, value: Any, path: str) -> dict:
        raw = self.mapping(value, path, CELL_KEYS, required=("nodes",)) or {}
        out: dict[str, Any] = {}
        if "repeats" in raw:
            out["repeats"] = self.field(raw["repeats"], f"{path}.repeats", self.integer(1), ranges=True)
        for key in ("share_weights", "sum_unused", "outputs_last", "intermediate_not_finest"):
            if key in raw:
                out[key] = self.field(raw[key], _join(path, key), self.boolean)
        if "aggregate" in raw:
            out["aggregate"] = self.field(raw["aggregate"], f"{path}.aggregate",
                                          self.enum(vocab.AGGREGATE))
        # A missing `nodes` is already reported by `mapping`; `nodes:` with no value is not.
        out["nodes"] = (self.node_list(raw["nodes"], f"{path}.nodes", allow_empty=False)
                        if "nodes" in raw else [])
        return out

    def feedback(self, value: Any, path: str) -> dict:
        raw = self.mapping(value, path, FEEDBACK_KEYS) or {}
        out: dict[str, Any] = {}
        if "steps" in raw:
            out["steps"] = self.field(raw["steps"], f"{path}.steps", self.integer(2), ranges=True)
        if "aspp_dilations" in raw:
            dil = raw["aspp_dilations"]
            if not isinstance(dil, list) or not dil or not all(_is_int(d) and d >= 1 for d in dil):
                self.error(f"{path}.aspp_dilations", "expected a non-empty list of positive integers")
            else:
                out["aspp_dilations"] = tuple(dil)
        if "fusion" in raw:
            out["fusion"] = self.field(raw["fusion"], f"{path}.fusion", self.enum(vocab.FEEDBACK_FUSION))
        return out

    def node_list(self, value: Any, path: str, allow_empty: bool) -> list:
        if not isinstance(value, list):
            if value is not None or not allow_empty:
                self.error(path, f"expected a list of nodes, got {_kind(value)}")
            return []
        if not value and not allow_empty:
            self.error(path, "a cell needs at least one node")
        return [self.node(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def node(self, value: Any, path: str) -> dict:
        raw = self.mapping(value, path, NODE_KEYS, required=("level", "inputs"))
        if raw is None:
            return {}
        return {k: self.node_field(k, v, _join(path, k)) for k, v in raw.items() if k in NODE_KEYS}

    def node_field(self, key: str, value: Any, path: str) -> Any:
        if key == "level":
            if isinstance(value, dict) and "permutation" in value and self.allow_choices:
                return self.permutation(value, path)
            return self.field(value, path, self.level)
        if key == "inputs":
            if isinstance(value, dict) and "pick" in value and self.allow_choices:
                return self.pick(value, path)
            return self.field(value, path, self.feature_names)
        if key == "post":
            return self.field(value, path, self.op_list(vocab.POST_OPS))
        if key == "output":
            return self.field(value, path, self.boolean)
        if key == "block":
            return self.field(value, path, self.enum({b: "" for b in vocab.BLOCKS}))
        if key == "params":
            if not isinstance(value, dict):
                self.error(path, f"expected a mapping of block parameters, got {_kind(value)}")
                return _BAD
            return dict(value)
        table = {"combine": vocab.COMBINE, "fusion": vocab.FUSION, "upsample": vocab.UPSAMPLE,
                 "downsample": vocab.DOWNSAMPLE}[key]
        return self.field(value, path, self.enum(table))

    def pick(self, value: dict, path: str) -> Any:
        extra = set(value) - {"pick", "from"}
        if extra:
            self.error(path, f"a pick takes 'pick' and 'from', got unknown {sorted(extra)}")
            return _BAD
        k = value["pick"]
        if isinstance(k, dict):
            if "range" not in k:
                self.error(f"{path}.pick", "expected an integer or {range: [lo, hi]}")
                return _BAD
            k = self.int_range(k, f"{path}.pick")
            if k is _BAD:
                return _BAD
            if k.low < 1:
                self.error(f"{path}.pick", "must pick at least one input")
                return _BAD
        elif not _is_int(k) or k < 1:
            self.error(f"{path}.pick", f"expected a positive integer, got {_kind(k)}")
            return _BAD
        pool = None
        if "from" in value:
            pool = self.feature_names(value["from"], f"{path}.from")
            if pool is _BAD:
                return _BAD
        return Pick(k, pool)

    def permutation(self, value: dict, path: str) -> Any:
        if set(value) != {"permutation"}:
            self.error(path, f"a permutation takes only the key 'permutation', got {sorted(value)}")
            return _BAD
        items = value["permutation"]
        if not isinstance(items, list) or not items:
            self.error(f"{path}.permutation", "expected a non-empty list of levels")
            return _BAD
        levels = [self.level(v, f"{path}.permutation[{i}]") for i, v in enumerate(items)]
        if any(lv is _BAD for lv in levels):
            return _BAD
        if len(set(levels)) != len(levels):
            self.error(f"{path}.permutation", "levels in a permutation must be distinct")
            return _BAD
        return Permutation(tuple(level_name(lv) for lv in levels))


def read_template(data: Any, source: str | None = None, lines: dict[str, int] | None = None,
                  allow_choices: bool = False) -> dict:
    """Pass 1: check field types and vocabulary; raise DSLError with every problem found."""
    reader = _Reader(lines, allow_choices)
    template = reader.document(data)
    if reader.problems or template is None:
        raise DSLError(reader.problems or [Problem("", "empty document")], source)
    template["_lines"] = reader.lines
    return template


# ----------------------------------------------------------------------------- pass 2: assemble
def assemble(template: dict, source: str | None = None) -> Genotype:
    """Pass 2: a choice-free template -> Genotype, with the checks that span fields."""
    lines = template.get("_lines", {})
    problems: list[Problem] = []

    def error(path: str, message: str) -> None:
        problems.append(Problem(path, message, _line_of(path, lines)))

    levels: tuple[int, ...] = template["levels"]
    defaults = template.get("defaults", {})
    stem_t = template.get("stem", {})
    cell_t = template["cell"]
    stem_nodes = [_make_node(n, defaults) for n in stem_t.get("nodes", [])]
    cell_nodes = [_make_node(n, defaults) for n in cell_t["nodes"]]

    p_names = [level_name(lv) for lv in levels]
    s_names = [f"s{i}" for i in range(len(stem_nodes))]
    for i, (node, raw) in enumerate(zip(stem_nodes, stem_t.get("nodes", []))):
        _check_node(node, raw, f"stem.nodes[{i}]", p_names + s_names[:i], f"s{i}", error,
                    later=s_names[i + 1:], hidden=("n",))
        if node.output:
            error(f"stem.nodes[{i}].output", "stem nodes cannot be outputs; outputs are cell nodes")
    n_names = [f"n{i}" for i in range(len(cell_nodes))]
    for i, (node, raw) in enumerate(zip(cell_nodes, cell_t["nodes"])):
        _check_node(node, raw, f"cell.nodes[{i}]", p_names + s_names + n_names[:i], f"n{i}", error,
                    later=n_names[i + 1:], hidden=())

    cell = Cell(nodes=tuple(cell_nodes),
                **{k: cell_t[k] for k in ("repeats", "share_weights", "sum_unused", "outputs_last",
                                          "intermediate_not_finest", "aggregate") if k in cell_t})
    _check_outputs(cell, levels, error)
    stem = Stem(nodes=tuple(stem_nodes),
                **{k: stem_t[k] for k in ("lateral", "lateral_when", "extra", "extra_source",
                                          "extra_relu") if k in stem_t})
    feedback = Feedback(**template["feedback"]) if "feedback" in template else None
    if problems:
        raise DSLError(problems, source)
    return Genotype(name=template.get("name", Path(source).stem if source else "genotype"),
                    levels=levels, channels=template["channels"], cell=cell, stem=stem,
                    feedback=feedback, paper=template.get("paper", ""),
                    description=template.get("description", ""))


def _make_node(raw: dict, defaults: dict) -> Node:
    merged = {**{k: getattr(NODE_DEFAULTS, k) for k in DEFAULTABLE_FIELDS}, **defaults, **raw}
    params = dict(merged.get("params") or {})
    if merged.get("block"):
        spec = vocab.BLOCKS[merged["block"]]["params"]
        params = {**{k: default for k, (_, default, _) in spec.items()}, **params}
        merged["combine"], merged["fusion"] = NODE_DEFAULTS.combine, NODE_DEFAULTS.fusion
    merged["params"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                    for k, v in params.items()))
    return Node(**{k: merged[k] for k in Node.__dataclass_fields__ if k in merged})


def _check_node(node: Node, raw: dict, path: str, visible: list[str], own: str, error,
                later: list[str], hidden: tuple[str, ...]) -> None:
    for j, name in enumerate(node.inputs):
        where = f"{path}.inputs[{j}]"
        if name in visible:
            continue
        if name == own:
            error(where, f"a node cannot take itself ('{own}') as input")
        elif name in later:
            error(where, f"'{name}' is defined after this node: a node may only use earlier features "
                         f"({', '.join(visible)})")
        elif hidden and name[0] in hidden:
            error(where, f"'{name}' is a cell node: stem nodes see only P-levels and earlier stem nodes")
        else:
            error(where, f"unknown feature '{name}'{did_you_mean(name, visible)}")
    n = len(node.inputs)
    if node.block is not None:
        spec = vocab.BLOCKS[node.block]
        if n != spec["inputs"]:
            error(f"{path}.inputs", f"block '{node.block}' takes exactly {spec['inputs']} input(s), got {n}")
        for key in ("combine", "fusion"):
            if key in raw:
                error(f"{path}.{key}", f"a block node has no '{key}': block '{node.block}' combines itself")
        for key, value in node.params:
            if key not in spec["params"]:
                error(f"{path}.params.{key}", f"unknown parameter '{key}' for block '{node.block}'"
                      + did_you_mean(key, spec["params"]))
            elif key == "ratios" and not (isinstance(value, tuple) and value and all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in value)):
                error(f"{path}.params.ratios", "expected a non-empty list of numbers in (0, 1]")
        return
    if node.params:
        error(f"{path}.params", "params are only for block nodes (set `block:`)")
    if node.combine.startswith("global_attention") and n != 2:
        error(f"{path}.inputs", f"combine '{node.combine}' takes exactly 2 inputs, got {n}")
    if node.fusion != "none":
        if node.combine != "sum":
            error(f"{path}.fusion", f"fusion '{node.fusion}' weights a sum: it needs combine 'sum', "
                                    f"not '{node.combine}'")
        elif n < 2:
            error(f"{path}.fusion", f"fusion '{node.fusion}' needs at least 2 inputs, got {n}")
    if node.combine == "concat" and n < 2:
        error(f"{path}.inputs", "combine 'concat' needs at least 2 inputs")


def _check_outputs(cell: Cell, levels: tuple[int, ...], error) -> None:
    """The permutation rule (one output per level) and the declared NAS-FPN constraints."""
    seen: dict[int, int] = {}
    for i, node in enumerate(cell.nodes):
        if not node.output:
            continue
        if node.level in seen:
            error(f"cell.nodes[{i}].level", f"two output nodes at level {level_name(node.level)} "
                  f"(n{seen[node.level]} and n{i}): outputs must cover each level exactly once")
        seen.setdefault(node.level, i)
    missing = [level_name(lv) for lv in levels if lv not in seen]
    if missing:
        error("cell.nodes", f"no output node at level {', '.join(missing)}: "
              "outputs (`output: true`) must cover each level exactly once")
    k = len(levels)
    if cell.outputs_last:
        for i, node in enumerate(cell.nodes):
            should = i >= len(cell.nodes) - k
            if node.output != should:
                error(f"cell.nodes[{i}].output", f"outputs_last: the last {k} nodes must be the outputs "
                      f"and no other node may be")
                break
    if cell.intermediate_not_finest:
        for i, node in enumerate(cell.nodes):
            if not node.output and node.level == levels[0]:
                error(f"cell.nodes[{i}].level", f"intermediate_not_finest: an intermediate node may not "
                      f"be at the finest level {level_name(levels[0])}")


# ----------------------------------------------------------------------------- helpers
def _line_of(path: str, lines: dict[str, int]) -> int | None:
    """Line of the field, or of its nearest enclosing field the file has."""
    while path and path not in lines:
        path = path[: max(path.rfind("."), path.rfind("["), 0)]
    return lines.get(path)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
