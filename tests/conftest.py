import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Backbone weights and features of the smoke budget, shared by the tests of one session."""
    return tmp_path_factory.mktemp("nasfpn-cache")


@pytest.fixture(scope="session")
def smoke(cache_dir):
    from nasfpn.proxy.budgets import get_budget
    from nasfpn.proxy.data import load_data
    from nasfpn.proxy.prepare import prepare

    budget = get_budget("smoke")
    data = load_data("synthetic", budget.image_size, budget.train_images, budget.val_images, cache=str(cache_dir))
    return prepare(data, budget, cache=cache_dir, progress=False)
