"""The search-space DSL: YAML files -> Genotype / SearchSpace (plain, frozen data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .assemble import assemble
from .dump import to_dict, to_yaml
from .errors import DSLError, Problem, did_you_mean
from .parse import read_template
from .schema import Cell, Feedback, Genotype, Node, Stem, level_name
from .space import RandomSuggester, SearchSpace, Suggester
from .yaml_reader import load_yaml, parse_yaml

__all__ = ["Cell", "DSLError", "Feedback", "Genotype", "Node", "Problem", "RandomSuggester",
           "SearchSpace", "Stem", "Suggester", "from_dict", "from_yaml", "level_name", "load",
           "load_space", "read", "to_dict", "to_yaml", "zoo_dir", "zoo_names"]


def zoo_dir() -> Path:
    """The folder of shipped genotypes and spaces: the repo's search_spaces/ for a checkout or an
    editable install, the copy packaged inside nasfpn/ for a wheel install."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "search_spaces", package / "search_spaces"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no search_spaces/ folder beside or inside {package}")


def zoo_names(kind: str | None = None) -> list[str]:
    """Names of the shipped files, optionally only genotypes or only spaces."""
    names = []
    for path in sorted(zoo_dir().glob("*.yaml")):
        if kind is None or _declared_kind(path) == kind:
            names.append(path.stem)
    return names


def _declared_kind(path: Path) -> str:
    try:
        data, _ = load_yaml(path)
    except DSLError:
        return "genotype"
    return data.get("kind", "genotype") if isinstance(data, dict) else "genotype"


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = zoo_dir() / f"{name_or_path}.yaml"
    if len(path.parts) == 1 and candidate.is_file():
        return candidate
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path  # reading it reports what is wrong with it (missing, a FIFO, a folder)
    raise DSLError([Problem("", f"no zoo entry or file named '{name_or_path}'"
                            + did_you_mean(name_or_path, zoo_names()))], str(name_or_path))


def read(name_or_path: str | Path) -> Genotype | SearchSpace:
    """A zoo name or a YAML path -> Genotype (kind: genotype) or SearchSpace (kind: space)."""
    path = _resolve(name_or_path)
    data, lines = load_yaml(path)
    return from_dict(data, source=str(path), lines=lines)


def from_dict(data: Any, source: str | None = None, lines: dict | None = None) -> Genotype | SearchSpace:
    template = read_template(data, source, lines)
    if template["kind"] == "space":
        return SearchSpace(template, source)
    return assemble(template, source)


def from_yaml(text: str, source: str | None = None) -> Genotype | SearchSpace:
    data, lines = parse_yaml(text, source)
    return from_dict(data, source, lines)


def load(name_or_path: str | Path) -> Genotype:
    """A genotype by zoo name (`nasfpn`, `bifpn`, ...) or path."""
    item = read(name_or_path)
    if isinstance(item, SearchSpace):
        raise DSLError([Problem("kind", "this is a search space, not a genotype: "
                                "use nasfpn.load_space, or sample a point from it")], item.source)
    return item


def load_space(name_or_path: str | Path) -> SearchSpace:
    item = read(name_or_path)
    if not isinstance(item, SearchSpace):
        raise DSLError([Problem("kind", "this is a genotype, not a search space (set `kind: space`)")],
                       str(name_or_path))
    return item
