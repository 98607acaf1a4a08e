"""Helpers shared by subcommands."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad option, missing file): one line, exit code 2."""


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"expected positive integers, got '{text}'")
    return values


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"
