"""YAML text -> plain data, with limits a user never meets and a hostile file always does.

`yaml.safe_load` builds no objects, but on its own it still lets a file expand (aliases that
multiply: a "billion laughs" document), refer to itself (a recursive alias), nest until Python's
recursion limit, or say a key twice (the last one silently wins). Here a document is composed
once, measured, and only then constructed:

- MAX_YAML_BYTES: the file's size;
- MAX_YAML_DEPTH: nesting of mappings and lists, counted after aliases are expanded;
- MAX_YAML_NODES: values in the document after aliases are expanded (aliases within the limits
  are resolved as YAML says; a recursive alias is refused);
- a key given twice in one mapping is refused with both line numbers (merge keys `<<` excepted).

The shipped files are far inside every limit (the largest: 6 KB, 5 levels, ~900 values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..files import FileProblem, human_bytes, read_text
from .errors import DSLError, Problem

MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 50_000

_MERGE = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    def __init__(self, line: int | None, message: str, path: str = ""):
        super().__init__(message)
        self.problem = Problem(path, message, line)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer stops at MAX_YAML_DEPTH (it recurses once per level)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(line, f"nested more than {MAX_YAML_DEPTH} levels deep "
                                     "(limit MAX_YAML_DEPTH)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(key, path), (value, f"{path}.{name}" if path else str(name))]
        return out
    return []


def _duplicates(node: yaml.MappingNode, path: str) -> list[Problem]:
    seen: dict[tuple[str, str], int] = {}
    problems = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
            continue
        ident = (key.tag, key.value.lower() if key.tag.endswith(":bool") else key.value)
        where = f"{path}.{key.value}" if path else str(key.value)
        if ident in seen:
            problems.append(Problem(where, f"key '{key.value}' is given twice (lines {seen[ident]} "
                                           f"and {_line(key)}): remove one", _line(key)))
        else:
            seen[ident] = _line(key)
    return problems


def _measure(root: yaml.Node) -> list[Problem]:
    """Check size, depth and recursion after alias expansion; return duplicate-key problems.
    Each node is visited once (document order meets every anchor before its aliases) and its
    expanded size and height are kept, so a document that would expand to billions is measured
    in the time it takes to read it."""
    seen: dict[int, tuple[int, int]] = {}
    problems: list[Problem] = []
    open_nodes: set[int] = set()

    def visit(node: yaml.Node, path: str, depth: int) -> tuple[int, int]:
        if id(node) in open_nodes:
            raise _Refused(_line(node), "an alias refers to a value that contains it "
                                        "(a recursive alias)", path)
        if id(node) not in seen:
            open_nodes.add(id(node))
            if isinstance(node, yaml.MappingNode):
                problems.extend(_duplicates(node, path))
            size, height = 1, 1
            for child, child_path in _children(node, path):
                child_size, child_height = visit(child, child_path, depth + 1)
                size, height = size + child_size, max(height, child_height + 1)
                if size > MAX_YAML_NODES:
                    raise _Refused(_line(node), f"the document expands to more than {MAX_YAML_NODES} "
                                                "values (aliases multiply it; limit MAX_YAML_NODES)", path)
            open_nodes.discard(id(node))
            seen[id(node)] = (size, height)
        size, height = seen[id(node)]
        if depth + height - 1 > MAX_YAML_DEPTH:
            raise _Refused(_line(node), f"aliases expand it to more than {MAX_YAML_DEPTH} levels of "
                                        "nesting (limit MAX_YAML_DEPTH)", path)
        return size, height

    visit(root, "", 1)
    return problems


def _line_map(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out.setdefault(path, _line(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            out[child] = _line(key)
            _line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, f"{path}[{i}]", out)


def parse_yaml(text: str, source: str | None = None) -> tuple[Any, dict[str, int]]:
    """Plain data of one YAML document and a map field path -> line, within the limits."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise DSLError([Problem("", f"larger than the limit of {human_bytes(MAX_YAML_BYTES)} "
                                    "(MAX_YAML_BYTES)")], source)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        problems = _measure(root)
        if problems:
            raise DSLError(problems, source)
        lines: dict[str, int] = {}
        _line_map(root, "", lines)
        return loader.construct_document(root), lines
    except DSLError:
        raise
    except _Refused as refused:
        raise DSLError([refused.problem], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DSLError([Problem("", f"not valid YAML: {what}", line)], source) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DSLError([Problem("", f"a value cannot be read: {exc}")], source) from None
    except RecursionError:  # a parser path the depth limit does not cover
        raise DSLError([Problem("", f"nested too deeply (limit MAX_YAML_DEPTH = {MAX_YAML_DEPTH})")],
                       source) from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> tuple[Any, dict[str, int]]:
    """Read a regular file of at most MAX_YAML_BYTES and parse it as above."""
    try:
        text = read_text(path, MAX_YAML_BYTES, "MAX_YAML_BYTES")
    except FileProblem as problem:
        raise DSLError([Problem("", problem.reason)], str(path)) from None
    return parse_yaml(text, str(path))
