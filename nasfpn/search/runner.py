"""Run (or resume) a search: Ray Tune drives the NeckSearcher, ASHA stops weak trials early,
every trial trains on the data and backbone features prepared once on the driver.

A start that fails (a bad option, an unreachable cluster, resources it lacks, missing data)
writes nothing under runs/: the run directory is made once everything is ready. Resuming
reads only JSON (manifest.json, trials.jsonl) and the Optuna study, and starts a new Tune
experiment for what is left; nothing is unpickled from the run directory.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

from ..dsl import load, load_space, zoo_names
from ..files import FileProblem, output_dir
from .errors import SearchError
from .records import TrialRecord
from .store import STUDY_DB, read_manifest, read_trial_log, redact, space_file, write_manifest

STORAGE_ENV = "NASFPN_STORAGE"   # the Optuna storage URL, so that a password need not be typed
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass
class SearchOptions:
    space: str
    trials: int = 40
    budget: str = "proxy"
    sampler: str = "tpe"
    objective: str = "ap"
    concurrency: Optional[int] = None
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    address: Optional[str] = None
    storage: Optional[str] = None
    storage_path: Optional[str] = None
    name: Optional[str] = None
    runs_dir: str = "runs"
    data: str = "synthetic"
    baselines: list[str] = field(default_factory=lambda: zoo_names("genotype"))
    seed: int = 0
    trial_seed: int = 0
    backbone_seed: int = 0
    asha: bool = True
    sets: list[str] = field(default_factory=list)   # --set key=value overrides of the budget
    cpus: Optional[int] = None
    cache: Optional[str] = None
    cache_limit_gb: Optional[float] = None
    workers: Optional[int] = None
    max_flops: Optional[float] = None    # neck FLOPs at the budget's image size and width
    max_params: Optional[float] = None
    min_tau: float = 0.6                 # warn when the budget's calibration on the data ranks below this
    warm_start: list[str] = field(default_factory=list)   # "zoo" and/or run directories (warmstart.py)
    promote: int = 3                     # the best sampled trials trained again at the longer rung
    promote_factor: int = 4              # the longer rung: this many times the budget's steps
    progress: bool = True

    @property
    def objectives(self) -> list[str]:
        return [o.strip() for o in self.objective.split(",")]


# What each annotation of SearchOptions admits: a resumed run's options come from a file.
_ADMITS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list[str]": (list,),
           "Optional[int]": (int, type(None)), "Optional[str]": (str, type(None)),
           "Optional[float]": (int, float, type(None))}


def _validate(opts: SearchOptions) -> None:
    from .sampling import SAMPLERS
    from .searcher import OBJECTIVES

    for f in fields(SearchOptions):
        value, kinds = getattr(opts, f.name), _ADMITS[str(f.type)]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise SearchError(f"{f.name.replace('_', '-')}: {value!r} is not a valid value")
    if not all(isinstance(b, str) for b in opts.baselines):
        raise SearchError(f"baselines: {opts.baselines!r} is not a list of neck names")
    if not all(isinstance(b, str) for b in opts.sets):
        raise SearchError(f"sets: {opts.sets!r} is not a list of key=value overrides")
    if not all(isinstance(b, str) for b in opts.warm_start):
        raise SearchError(f"warm-start: {opts.warm_start!r} is not a list of 'zoo' and run directories")
    if opts.trials < 1:
        raise SearchError("--trials must be at least 1")
    if opts.sampler not in SAMPLERS:
        raise SearchError(f"--sampler {opts.sampler}: expected one of {', '.join(SAMPLERS)}")
    bad = [o for o in opts.objectives if o not in OBJECTIVES]
    if bad or not opts.objectives or opts.objectives[0] != "ap" or len(set(opts.objectives)) != len(opts.objectives):
        raise SearchError(f"--objective {opts.objective}: expected 'ap' or 'ap,flops'")
    if opts.sampler == "nsga2" and len(opts.objectives) < 2:
        raise SearchError("--sampler nsga2 searches several objectives: add --objective ap,flops")
    if opts.sampler == "evolution" and len(opts.objectives) > 1:
        raise SearchError("--sampler evolution optimizes one objective: use --objective ap")
    if not (opts.cpus_per_trial > 0 and opts.gpus_per_trial >= 0):  # NaN fails both
        raise SearchError("--cpus-per-trial must be positive and --gpus-per-trial not negative")
    for name in ("max_flops", "max_params"):
        limit = getattr(opts, name)
        if limit is not None and not limit > 0:  # NaN fails too
            raise SearchError(f"--{name.replace('_', '-')} must be positive")
    if opts.promote < 0 or opts.promote_factor < 2:
        raise SearchError("--promote must be 0 or more and --promote-factor at least 2")
    if opts.concurrency is not None and opts.concurrency < 1:
        raise SearchError("--concurrency must be at least 1")
    for name in opts.baselines:
        load(name)  # an unknown name is a DSLError naming it


def _new_run_dir(opts: SearchOptions) -> Path:
    name = opts.name or f"{Path(opts.space).stem}-{opts.sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not NAME.fullmatch(name):
        raise SearchError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder "
                          "under --runs-dir)")
    run_dir = Path(opts.runs_dir) / name
    if (run_dir / "manifest.json").exists():
        raise SearchError(f"{run_dir} already holds a search: resume it with --resume {run_dir}, "
                          "or choose another --name")
    if run_dir.exists() and not run_dir.is_dir():
        raise SearchError(f"{run_dir}: is a file, not a run directory")
    return run_dir


def _resumed(run_dir: Path, given: SearchOptions) -> tuple[SearchOptions, dict]:
    """The options of a run from its manifest; the storage URL (never saved with its secrets)
    from --storage or $NASFPN_STORAGE."""
    if not run_dir.is_dir():
        raise SearchError(f"{run_dir}: no such run directory")
    manifest = read_manifest(run_dir)
    saved = {f.name: manifest["args"][f.name] for f in fields(SearchOptions) if f.name in manifest["args"]}
    saved.setdefault("promote", 0)  # a run from before promotion ends as it was
    storage = given.storage
    if saved.get("storage"):
        if not storage:
            raise SearchError(f"{run_dir}: its study lives in {saved['storage']}: give that URL again with "
                              f"--storage, or in ${STORAGE_ENV}, to resume")
        if redact(storage) != saved["storage"]:
            raise SearchError(f"--storage {redact(storage)}: this run's study lives in {saved['storage']}")
    opts = SearchOptions(**{**saved, "space": str(space_file(run_dir, manifest)), "storage": storage,
                            "address": given.address or saved.get("address"), "progress": given.progress})
    return opts, manifest


def _quiet() -> None:
    """Tune's console tables and Optuna's per-trial logs would drown the progress line."""
    import warnings

    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def run_search(opts: SearchOptions, resume: Optional[Path] = None,
               report: Optional[Callable[[Path], object]] = None) -> tuple[Path, bool]:
    """Returns the run directory and whether every trial finished (False after Ctrl-C).
    `report(run_dir)` is called at the end, also when the search was interrupted."""
    _quiet()
    from ..dsl.budget import budget_from_dict, read_budget
    from ..proxy.cache import cache_dir
    from ..proxy.calibrations import find_calibration
    from ..proxy.data import load_data
    from ..proxy.precision import resolve as resolve_precision
    from ..proxy.session import DEFAULT_CACHE_LIMIT_GB, SessionSpec
    from .cluster import check_resources, connect_ray, device_for, prepare_where_trials_run
    from .constraints import NeckLimits
    from .searcher import NeckSearcher

    if resume is not None:
        run_dir = Path(resume)
        opts, manifest = _resumed(run_dir, opts)
        study_name, run_id = manifest.get("study") or run_dir.name, manifest.get("run_id", "")
    else:
        run_dir = _new_run_dir(opts)
        study_name, run_id = run_dir.name, uuid.uuid4().hex
    _validate(opts)
    space = load_space(opts.space)
    # a resumed run trains on the budget it started with, whatever its file says now
    budget = (budget_from_dict(manifest["budget"], str(run_dir / "manifest.json"))
              if resume is not None and "budget" in manifest else read_budget(opts.budget, opts.sets))
    if device_for(opts.gpus_per_trial) == "cpu":  # a GPU's precision is resolved on the worker that has it
        resolve_precision(budget.precision, "cpu")
    warm_zoo, warm_points = _warm_start(opts, space, budget.as_dict(), resumed=resume is not None)
    baselines = opts.baselines + [name for name in warm_zoo if name not in opts.baselines]
    log = read_trial_log(run_dir)
    queue, to_sample, longer = _work_left(log.records, run_dir, baselines, opts)
    spec = None
    if queue or to_sample or longer:  # a finished run resumes (reconciles, reports) without Ray or data
        connect_ray(opts.address, opts.cpus)
        check_resources(opts.cpus_per_trial, opts.gpus_per_trial)
        spec = SessionSpec(opts.data, budget, tuple(space.template["levels"]), opts.backbone_seed,
                           cache=_cache_for(opts), workers=_loader_workers(opts),
                           cache_limit_gb=opts.cache_limit_gb or DEFAULT_CACHE_LIMIT_GB)
        if opts.gpus_per_trial > 0:
            # the driver checks the data; a GPU worker pretrains and caches, where the trials run
            load_data(spec.data, budget.image_size, budget.train_images, budget.val_images, spec.data_seed,
                      spec.cache)
            prepare_where_trials_run(spec, opts.cpus_per_trial, opts.gpus_per_trial, device_for(opts.gpus_per_trial))
        else:  # the driver checks the data and fills the cache; each trial worker opens it from there
            spec.open("cpu", progress=opts.progress)

    calibration = find_calibration(cache_dir(_cache_for(opts)), opts.data, budget, Path(opts.runs_dir))
    created = not run_dir.exists()
    try:
        output_dir(run_dir)
        storage = opts.storage or f"sqlite:///{(run_dir / STUDY_DB).resolve()}"
        searcher = NeckSearcher(space, storage, study_name, sampler=opts.sampler, seed=opts.seed,
                                objectives=opts.objectives, run_dir=str(run_dir), run_id=run_id,
                                storage_label=redact(opts.storage) if opts.storage else str(run_dir / STUDY_DB),
                                constraint=(NeckLimits(budget, opts.max_flops, opts.max_params)
                                            if opts.max_flops is not None or opts.max_params is not None else None),
                                warm_zoo=warm_zoo, promote=opts.promote, promote_factor=opts.promote_factor)
        if resume is None:
            recorded = asdict(opts) | {"storage": redact(opts.storage) if opts.storage else None}
            write_manifest(run_dir, recorded, opts.space, study_name, run_id, budget.as_dict(), calibration)
    except (SearchError, FileProblem, OSError, KeyboardInterrupt):
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        for line in log.warnings():
            print(f"warning: {line}", file=sys.stderr)
        if resume is None:
            _warn_about(calibration, opts, budget.name)
        for point in warm_points:
            searcher.tell_warm(point)
        left = searcher.resume(log.records, baselines, opts.trials)
        if left:
            _fit(searcher, spec, opts, log.records, left, run_dir)
    finally:
        if report is not None and read_trial_log(run_dir).records:
            report(run_dir)
    queue, to_sample, longer = _work_left(read_trial_log(run_dir).records, run_dir, baselines, opts)
    return run_dir, not queue and (to_sample == 0 or searcher.exhausted) and not longer


def _warm_start(opts: SearchOptions, space, budget: dict, resumed: bool) -> tuple[dict, list]:
    """The zoo necks that are points of the space (name -> params) and the trials of other runs
    that --warm-start names. A resumed search tells what the other runs finished since; one that
    is gone or no longer matches is skipped with a warning (what it told is in the study)."""
    from .warmstart import ZOO, parse_sources, run_points, zoo_points

    values = opts.warm_start
    if resumed:
        gone = [v for v in values if v != ZOO and not (Path(v) / "manifest.json").exists()]
        for value in gone:
            print(f"warning: --warm-start {value}: no search there any more; what it told is in the study",
                  file=sys.stderr)
        values = [v for v in values if v not in gone]
    zoo, others = parse_sources(values)
    warm_zoo = zoo_points(space) if zoo else {}
    if zoo and not warm_zoo and not resumed:
        print(f"warning: --warm-start zoo: no zoo neck is a point of {space.name}", file=sys.stderr)
    points = []
    for run in others:
        try:
            points += run_points(run, space, budget, opts.data, opts.backbone_seed, opts.gpus_per_trial > 0)
        except SearchError as err:
            if not resumed:
                raise
            print(f"warning: {err}; skipped, what it told is in the study", file=sys.stderr)
    return warm_zoo, points


def _warn_about(calibration: Optional[dict], opts: SearchOptions, budget: str) -> None:
    """Once per search: how far this budget's ranking is known to hold on this data."""
    if calibration is None:
        print(f"warning: budget {budget} has no calibration on {opts.data}: `nasfpn calibrate --data {opts.data} "
              f"--budget {budget}` measures how far its ranking holds at the reference budget", file=sys.stderr)
    elif calibration["tau"] < opts.min_tau:
        print(f"warning: budget {budget} ranks necks on {opts.data} at Kendall tau {calibration['tau']:.3f} against "
              f"{calibration.get('reference')} ({calibration.get('report')}), below --min-tau {opts.min_tau:g}",
              file=sys.stderr)


def _work_left(records, run_dir: Path, baselines: list[str], opts: SearchOptions) -> tuple[list[str], int, list]:
    """The baselines still to train, how many points to sample, and the promotions still to run."""
    from .searcher import promotions_left, work_left
    from .store import read_promoted

    queue, to_sample = work_left(records, baselines, opts.trials)
    return queue, to_sample, promotions_left(records, read_promoted(run_dir), opts.promote, opts.promote_factor)


def _loader_workers(opts: SearchOptions) -> int:
    """--workers; else the CPUs a trial holds, less the one it trains on (Ray reserved no more)."""
    return opts.workers if opts.workers is not None else max(0, int(opts.cpus_per_trial) - 1)


def _cache_for(opts: SearchOptions) -> Optional[str]:
    """--cache; else, on a cluster with a shared --storage-path folder, a cache inside it (every
    node reads what one built); else each node's own default cache."""
    from ..proxy.cache import cache_dir

    if opts.cache:
        return opts.cache
    if opts.storage_path and "://" not in opts.storage_path:
        return str(Path(opts.storage_path) / "cache")
    if not (opts.address or os.environ.get("RAY_ADDRESS")):  # the embedded Ray: its workers read this cache
        return str(cache_dir(None))
    return None


def _fit(searcher, spec, opts: SearchOptions, records: list[TrialRecord], left: int, run_dir: Path) -> None:
    import ray
    from ray import tune

    from .asha import RungHalving
    from .cluster import device_for
    from .progress import SearchProgress
    from .trainable import TrialSettings, neck_trial

    device = device_for(opts.gpus_per_trial)
    settings = TrialSettings(threads=max(1, int(opts.cpus_per_trial)), device=device, seed=opts.trial_seed)
    trainable = tune.with_resources(tune.with_parameters(neck_trial, spec=spec, settings=settings),
                                    {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
    scheduler = None
    if opts.asha:
        scheduler = RungHalving(spec.budget.evals)
        for r in records:  # the trials a resumed run holds count at every rung they reached
            scheduler.seed(f"before-{r.trial_id}", r.rungs)
    cpus = ray.cluster_resources().get("CPU", 1)
    concurrency = opts.concurrency or max(1, int(cpus // opts.cpus_per_trial))
    progress = SearchProgress(records, len(records) + left, started=searcher.started, show=opts.progress)
    storage_path = opts.storage_path or str(run_dir.resolve())
    try:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=left,
                                        max_concurrent_trials=concurrency,
                                        # a new actor per trial re-imports torch: ~2 s a trial
                                        reuse_actors=True,
                                        trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
            run_config=tune.RunConfig(name="tune", storage_path=storage_path, callbacks=[progress],
                                      verbose=0, failure_config=tune.FailureConfig(max_failures=2)))
        tuner.fit()
    finally:
        progress.bar.close()
