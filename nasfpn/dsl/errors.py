"""Problems found in a DSL file, each tied to a field path (and a line when the file has one)."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from ..errors import NasfpnError


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def format(self, source: str | None) -> str:
        where = source or "<genotype>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DSLError(NasfpnError, ValueError):
    """A file (or dict) that is not a valid genotype or search space; carries every problem found."""

    located = True

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(p.format(source) for p in self.problems))


def did_you_mean(word: object, candidates) -> str:
    """' (did you mean 'x'?)' for a near miss, else a short list of what is allowed."""
    names = [str(c) for c in candidates]
    word = str(word)

    def score(name: str) -> tuple[float, int]:  # similarity, then the longer common prefix
        prefix = len(os.path.commonprefix([word, name]))
        return difflib.SequenceMatcher(None, word, name).ratio(), prefix

    best = max(names, key=score, default=None)
    if best is not None and score(best)[0] >= 0.6:
        return f" (did you mean '{best}'?)"
    if len(names) <= 12:
        return f" (expected one of: {', '.join(names)})"
    return ""


def line_of(path: str, lines: dict[str, int]) -> int | None:
    """Line of the field, or of its nearest enclosing field the file has."""
    while path and path not in lines:
        path = path[: max(path.rfind("."), path.rfind("["), 0)]
    return lines.get(path)


def short_int(value: int) -> str:
    """An integer as a message shows it; one of more than 24 digits by its size (converting a
    very long one to text would itself fail)."""
    if abs(value).bit_length() <= 79:
        return str(value)
    return f"a number of about {int(abs(value).bit_length() * 0.30103) + 1} digits"


def describe(value: Any) -> str:
    """A value as an error message shows it: 'abc', 4 (a number), a list, nothing."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"{short_int(value)} (a number)"
    if isinstance(value, float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
