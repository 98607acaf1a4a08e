import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Backbone weights and features of the smoke budget, shared by the tests of one session."""
    return tmp_path_factory.mktemp("nasfpn-cache")


@pytest.fixture(scope="session")
def smoke(cache_dir):
    """The one proxy session on the smoke budget that the tests share."""
    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.session import ProxySession

    return ProxySession.open("synthetic", read_budget("smoke"), cache=cache_dir, progress=False)
