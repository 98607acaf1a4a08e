"""The one error a search reports to its user."""

from ..errors import NasfpnError


class SearchError(NasfpnError):
    """A search that cannot start or resume (a bad option, an unreachable cluster, resources the
    cluster lacks, an existing or damaged run directory): one line, exit code 2."""
