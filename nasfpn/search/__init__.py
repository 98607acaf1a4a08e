"""Search: Ray Tune drives an Optuna sampler over a DSL space; results go to runs/NAME/."""

from .runner import SearchError, SearchOptions, run_search

__all__ = ["SearchError", "SearchOptions", "run_search"]
