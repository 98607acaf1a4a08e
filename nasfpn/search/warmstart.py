"""Warm start (`--warm-start zoo|RUN_DIR`): points a search knows before it samples, told to its
study as trials, so the sampler starts from them (TPE models them, evolution breeds from them).

- `zoo`: the hand-designed necks that are points of the space (`nasfpn-proxy` in nasfpn_space),
  trained with the search's baselines and told to the study with their outcome as they finish;
- a run directory: the sampled trials of another search on the same space, budget, data and
  backbone seed, told with the outcome they had there and not trained again.

A told trial carries the user attribute `warm_start` (where it came from), so it is told once,
resumed or not, and warm_start.jsonl lists what was told.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dsl import SearchSpace, load, load_space, zoo_names
from ..dsl.locate import locate
from .errors import SearchError
from .records import COMPLETE, PRUNED, SEARCH, TrialRecord
from .sampling import option_label
from .store import budget_differences, read_manifest, read_trials, space_file

ZOO = "zoo"


@dataclass(frozen=True)
class WarmPoint:
    source: str                # "zoo:nasfpn-proxy", or "<run id>:t12"
    params: dict[str, Any]     # as Optuna stores them
    record: TrialRecord        # the trained trial whose outcome is told


def optuna_params(choices: dict[str, Any]) -> dict[str, Any]:
    """A point's choices as Optuna stores them (a list-valued option by its label)."""
    return {name: option_label(value) for name, value in choices.items()}


def zoo_points(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """Zoo neck name -> its parameters, for the zoo necks that are points of `space`."""
    out = {}
    for name in zoo_names("genotype"):
        choices = locate(space, load(name))
        if choices is not None:
            out[name] = optuna_params(choices)
    return out


def _shape(space: SearchSpace) -> dict:
    """What makes two spaces the same set of points (their names and notes aside)."""
    return {k: v for k, v in space.template.items() if not k.startswith("_") and k not in ("name", "paper",
                                                                                            "description")}


def run_points(run_dir: Path, space: SearchSpace, budget: dict, data: str, backbone_seed: int,
               on_gpus: bool) -> list[WarmPoint]:
    """The trained sampled trials of the search in `run_dir`, which must have searched the same
    space with the same budget, data, backbone seed and kind of device (else its scores mean
    something else: `auto` precision is bf16 on one, fp32 on another)."""
    where = f"--warm-start {run_dir}"
    manifest = read_manifest(run_dir)
    if _shape(load_space(space_file(run_dir, manifest))) != _shape(space):
        raise SearchError(f"{where}: that search sampled another space than {space.name}")
    differ = [key for key, _, _ in budget_differences(manifest, budget)]
    if differ:
        raise SearchError(f"{where}: that search trained on another budget ({', '.join(differ[:5])} differ)")
    args = manifest["args"]
    for name, mine in (("data", data), ("backbone_seed", backbone_seed)):
        if args.get(name) != mine:
            raise SearchError(f"{where}: that search used {name.replace('_', '-')} {args.get(name)!r}, this one "
                              f"{mine!r}")
    if bool(args.get("gpus_per_trial")) != on_gpus:
        raise SearchError(f"{where}: that search trained on {'GPUs' if not on_gpus else 'CPUs'}, this one on "
                          f"{'GPUs' if on_gpus else 'CPUs'}")
    run_id = manifest.get("run_id") or run_dir.name
    return [WarmPoint(f"{run_id}:{r.name}", r.params, r) for r in read_trials(run_dir)
            if r.kind == SEARCH and r.state in (COMPLETE, PRUNED) and r.params and r.key]


def parse_sources(values: list[str]) -> tuple[bool, list[Path]]:
    """--warm-start values: whether `zoo` is among them, and the run directories."""
    runs = []
    for value in values:
        if value != ZOO:
            path = Path(value)
            if not (path / "manifest.json").exists():
                raise SearchError(f"--warm-start {value}: expected 'zoo' or a search run directory "
                                  "(one with a manifest.json)")
            runs.append(path)
    return ZOO in values, runs
