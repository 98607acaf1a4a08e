"""Plain data (from `yaml_reader`) -> checked template -> Genotype (or SearchSpace).

Reading happens in two passes so that genotypes and spaces share one grammar:
1. `read_template` (here) checks every field's type, vocabulary and range and returns a
   template: plain normalized values, where a space may hold choice markers (see `choices.py`);
2. `assemble` (assemble.py) turns a template without choices (a genotype file, or a sampled point of a space)
   into a Genotype and checks what spans fields: references, levels, the output rules.
Every problem names its field path; all problems of a file are reported together.
"""

from __future__ import annotations

from typing import Any, Callable

from . import limits, vocab
from .choices import Categorical, IntRange, Permutation, Pick, is_marker
from .errors import DSLError, Problem, describe, did_you_mean, line_of, short_int
from .schema import DEFAULTABLE_FIELDS, FEATURE_RE, LEVEL_RE, level_name

_BAD = object()  # a field that failed its check; the problem is already recorded

TOP_KEYS = ("kind", "name", "paper", "description", "levels", "channels", "stem", "defaults",
            "cell", "feedback")
STEM_KEYS = ("lateral", "lateral_when", "extra", "extra_source", "extra_relu", "nodes")
CELL_KEYS = ("nodes", "repeats", "share_weights", "sum_unused", "outputs_last",
             "intermediate_not_finest", "aggregate")
FEEDBACK_KEYS = ("steps", "aspp_dilations", "fusion")
NODE_KEYS = ("level", "inputs", "combine", "fusion", "upsample", "downsample", "post", "output",
             "block", "params")


# ----------------------------------------------------------------------------- pass 1: template
class _Reader:
    def __init__(self, lines: dict[str, int] | None, allow_choices: bool):
        self.lines = lines or {}
        self.allow_choices = allow_choices
        self.problems: list[Problem] = []
        self.levels: tuple[int, ...] = ()

    # -- bookkeeping
    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, line_of(path, self.lines)))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping of {', '.join(allowed)}, got {describe(value)}")
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
            return self.int_range(value, path, check)
        if "choice" in value:
            if set(value) != {"choice"}:
                self.error(path, f"a choice takes only the key 'choice', got {sorted(value)}")
                return _BAD
            options = value["choice"]
            if not isinstance(options, list):
                self.error(_join(path, "choice"), f"expected a list of options, got {describe(options)}")
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

    def int_range(self, value: dict, path: str, check: Callable[[Any, str], Any] | None = None) -> Any:
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
        if check is not None and any(check(b, _join(path, "range")) is _BAD for b in (low, high)):
            return _BAD  # the bounds must be values the field itself accepts
        return IntRange(low, high, step)

    # -- value checks: each returns the normalized value or _BAD
    def enum(self, table: dict[str, str]) -> Callable[[Any, str], Any]:
        def check(value: Any, path: str) -> Any:
            if not isinstance(value, str):
                self.error(path, f"expected a name{did_you_mean('', table)}, got {describe(value)}")
                return _BAD
            if value not in table:
                self.error(path, f"unknown '{value}'{did_you_mean(value, table)}")
                return _BAD
            return value
        return check

    def boolean(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {describe(value)}")
            return _BAD
        return value

    def integer(self, minimum: int, maximum: int, limit: str) -> Callable[[Any, str], Any]:
        def check(value: Any, path: str) -> Any:
            if not _is_int(value):
                self.error(path, f"expected an integer, got {describe(value)}")
                return _BAD
            if value < minimum:
                self.error(path, f"must be at least {minimum}, got {value}")
                return _BAD
            if value > maximum:
                self.error(path, f"must be at most {maximum} ({limit}), got {short_int(value)}")
                return _BAD
            return value
        return check

    def list_length(self, value: list, path: str, maximum: int, limit: str) -> bool:
        if len(value) > maximum:
            self.error(path, f"at most {maximum} entries ({limit}), got {len(value)}")
            return False
        return True

    def text(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            self.error(path, f"expected text, got {describe(value)}")
            return _BAD
        return value

    def level(self, value: Any, path: str) -> Any:
        match = LEVEL_RE.match(value) if isinstance(value, str) else None
        if not match:
            self.error(path, f"expected a level name like P3, got {describe(value)}")
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
                self.error(path, f"expected a list of ops, got {describe(value)}")
                return _BAD
            if not self.list_length(value, path, limits.MAX_OPS, "MAX_OPS"):
                return _BAD
            items = [self.enum(table)(op, f"{path}[{i}]") for i, op in enumerate(value)]
            return _BAD if any(i is _BAD for i in items) else tuple(items)
        return check

    def feature_names(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            self.error(path, f"expected a list of feature names like [P4, n0], got {describe(value)}")
            return _BAD
        if not value:
            self.error(path, "a node needs at least one input")
            return _BAD
        names, ok = [], True
        for i, name in enumerate(value):
            if not isinstance(name, str) or not FEATURE_RE.match(name):
                self.error(f"{path}[{i}]", f"expected a feature name (P3.., s0.., n0..), got {describe(name)}")
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
            out["channels"] = self.field(top["channels"], "channels",
                                        self.integer(1, limits.MAX_CHANNELS, "MAX_CHANNELS"), ranges=True)
        out["stem"] = self.stem(top.get("stem", {}), "stem")
        out["defaults"] = self.defaults(top.get("defaults", {}), "defaults")
        if "cell" in top:
            out["cell"] = self.cell(top["cell"], "cell")
        if top.get("feedback") is not None:
            out["feedback"] = self.feedback(top["feedback"], "feedback")
        return out

    def level_list(self, value: Any, path: str) -> Any:
        if not isinstance(value, list) or not value:
            self.error(path, f"expected a list of levels like [P3, P4, P5, P6, P7], got {describe(value)}")
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
            out["repeats"] = self.field(raw["repeats"], f"{path}.repeats",
                                         self.integer(1, limits.MAX_REPEATS, "MAX_REPEATS"), ranges=True)
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
            out["steps"] = self.field(raw["steps"], f"{path}.steps",
                                      self.integer(2, limits.MAX_FEEDBACK_STEPS, "MAX_FEEDBACK_STEPS"),
                                      ranges=True)
        if "aspp_dilations" in raw:
            where, dil = f"{path}.aspp_dilations", raw["aspp_dilations"]
            if not isinstance(dil, list) or not dil:
                self.error(where, f"expected a non-empty list of positive integers, got {describe(dil)}")
            elif self.list_length(dil, where, limits.MAX_LIST, "MAX_LIST"):
                check = self.integer(1, limits.MAX_DILATION, "MAX_DILATION")
                checked = [check(d, f"{where}[{i}]") for i, d in enumerate(dil)]
                if not any(d is _BAD for d in checked):
                    out["aspp_dilations"] = tuple(checked)
        if "fusion" in raw:
            out["fusion"] = self.field(raw["fusion"], f"{path}.fusion", self.enum(vocab.FEEDBACK_FUSION))
        return out

    def node_list(self, value: Any, path: str, allow_empty: bool) -> list:
        if not isinstance(value, list):
            if value is not None or not allow_empty:
                self.error(path, f"expected a list of nodes, got {describe(value)}")
            return []
        if not value and not allow_empty:
            self.error(path, "a cell needs at least one node")
        if not self.list_length(value, path, limits.MAX_NODES, "MAX_NODES"):
            return []
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
                self.error(path, f"expected a mapping of block parameters, got {describe(value)}")
                return _BAD
            names = [k for k in value if not isinstance(k, str)]
            if names:
                self.error(path, f"parameter names must be text, got {describe(names[0])}")
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
            self.error(f"{path}.pick", f"expected a positive integer, got {describe(k)}")
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


# ----------------------------------------------------------------------------- helpers
def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
