"""Problems found in a DSL file, each tied to a field path (and a line when the file has one)."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass


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


class DSLError(ValueError):
    """A file (or dict) that is not a valid genotype or search space; carries every problem found."""

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
