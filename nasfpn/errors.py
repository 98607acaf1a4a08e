"""The root of every error a user can cause. The CLI catches `NasfpnError` alone: it prints the
message (prefixed with the command unless the message already starts with its own location)
and exits with `exit_code`."""

from __future__ import annotations


class NasfpnError(Exception):
    """A mistake in what the user gave (a file, an option, a cluster, data): the message says
    what and where; never a bug in nasfpn."""

    exit_code = 2
    located = False  # True when the message starts with `file:line:` and needs no prefix
