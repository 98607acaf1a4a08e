"""Run (or resume) a search: Ray Tune drives the NeckSearcher, ASHA stops weak trials early,
every trial trains on the data and backbone features prepared once on the driver."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..dsl import load, load_space, zoo_names
from .store import read_manifest, read_trials, redact, write_manifest


class SearchError(Exception):
    """A search that cannot start (bad option, unreachable cluster, existing run): one line, exit 2."""


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
    steps: Optional[int] = None
    cpus: Optional[int] = None
    cache: Optional[str] = None
    progress: bool = True

    @property
    def objectives(self) -> list[str]:
        return [o.strip() for o in self.objective.split(",")]


def _check_reachable(address: str) -> None:
    """Fail in seconds, with one line, when a cluster address does not answer."""
    if address == "auto" or address.startswith(("ray://", "local")):
        host_port = address[len("ray://"):] if address.startswith("ray://") else None
    else:
        host_port = address
    if not host_port:
        return
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise SearchError(f"--address {address}: cannot reach the Ray cluster ({exc.strerror or exc})") from None


def connect_ray(address: Optional[str], cpus: Optional[int]) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS); else start an embedded single-node Ray
    bound to 127.0.0.1. Returns a description for the manifest."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return "already initialized"
    if address:
        _check_reachable(address)
        # `ray start` enables token authentication by default; a driver must then send the token
        # (from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and say so.
        has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                     or (Path.home() / ".ray" / "auth_token").exists())
        if has_token:
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SearchError(f"--address {address}: cannot join the Ray cluster: {exc}") from None
        return address
    # "local": a new instance even where `ray start` (or a crashed run) left one on this machine,
    # which a plain ray.init() would join, or fail to join once given num_cpus
    ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
             _node_ip_address="127.0.0.1", logging_level=logging.ERROR, log_to_driver=False)
    return "embedded"


def _storage_url(opts: SearchOptions, run_dir: Path) -> str:
    return opts.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


def _validate(opts: SearchOptions) -> None:
    from .sampling import SAMPLERS
    from .searcher import OBJECTIVES

    if opts.trials < 1:
        raise SearchError("--trials must be at least 1")
    if opts.sampler not in SAMPLERS:
        raise SearchError(f"--sampler {opts.sampler}: expected one of {', '.join(SAMPLERS)}")
    bad = [o for o in opts.objectives if o not in OBJECTIVES]
    if bad or not opts.objectives or opts.objectives[0] != "ap" or len(set(opts.objectives)) != len(opts.objectives):
        raise SearchError(f"--objective {opts.objective}: expected 'ap' or 'ap,flops'")
    if opts.sampler == "nsga2" and len(opts.objectives) < 2:
        raise SearchError("--sampler nsga2 searches several objectives: add --objective ap,flops")
    if opts.cpus_per_trial <= 0 or opts.gpus_per_trial < 0:
        raise SearchError("--cpus-per-trial must be positive and --gpus-per-trial not negative")
    if opts.concurrency is not None and opts.concurrency < 1:
        raise SearchError("--concurrency must be at least 1")
    for name in opts.baselines:
        load(name)  # an unknown name is a DSLError naming it


def _quiet() -> None:
    """Tune's console tables and Optuna's per-trial logs would drown the progress line."""
    import warnings

    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def run_search(opts: SearchOptions, resume: Optional[Path] = None) -> tuple[Path, bool]:
    """Returns the run directory and whether every trial finished (False after Ctrl-C)."""
    _quiet()
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from ..export.report import write_report
    from ..proxy.budgets import get_budget
    from ..proxy.data import load_data
    from ..proxy.prepare import prepare
    from .progress import SearchProgress
    from .searcher import NeckSearcher
    from .trainable import neck_trial

    if resume is not None:
        run_dir = resume
        if not (run_dir / "manifest.json").exists():
            raise SearchError(f"{run_dir}: no manifest.json here, so nothing to resume")
        saved = read_manifest(run_dir)["args"]
        opts = SearchOptions(**{**saved, "address": opts.address or saved.get("address"),
                                "storage": opts.storage or saved.get("storage"), "progress": opts.progress})
    else:
        name = opts.name or f"{Path(opts.space).stem}-{opts.sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(opts.runs_dir) / name
        if (run_dir / "manifest.json").exists():
            raise SearchError(f"{run_dir} already holds a search: resume it with --resume {run_dir}, "
                              "or choose another --name")
    _validate(opts)
    space = load_space(opts.space)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = _storage_url(opts, run_dir)
    if resume is None:
        write_manifest(run_dir, {k: v for k, v in asdict(opts).items() if k != "storage"} |
                       {"storage": redact(storage) if opts.storage else None}, opts.space, storage)

    cluster = connect_ray(opts.address, opts.cpus)
    budget = get_budget(opts.budget, steps=opts.steps)
    data = load_data(opts.data, budget.image_size, budget.train_images, budget.val_images,
                     cache=opts.cache)
    prepared = prepare(data, budget, levels=space.template["levels"], device="cpu",
                       backbone_seed=opts.backbone_seed, cache=opts.cache, progress=opts.progress)
    device = "cuda" if opts.gpus_per_trial > 0 else "cpu"
    settings = {"threads": max(1, int(opts.cpus_per_trial)), "device": device, "seed": opts.trial_seed}
    trainable = tune.with_resources(tune.with_parameters(neck_trial, prepared=prepared, settings=settings),
                                    {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
    total = opts.trials + len(opts.baselines)
    progress = SearchProgress(run_dir, total, show=opts.progress)
    storage_path = opts.storage_path or str(run_dir.resolve())
    tune_path = f"{storage_path.rstrip('/')}/tune"
    try:
        if resume is not None and tune.Tuner.can_restore(tune_path):
            tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
            # callbacks are not part of the saved state
            tuner._local_tuner._run_config.callbacks = [progress]
        else:
            scheduler = (ASHAScheduler(time_attr="rung", metric="ap_rung", mode="max", max_t=budget.evals,
                                       grace_period=1, reduction_factor=2) if opts.asha else None)
            searcher = NeckSearcher(space, storage, study_name=run_dir.name, sampler=opts.sampler, seed=opts.seed,
                                    objectives=opts.objectives, baselines=list(opts.baselines),
                                    run_dir=str(run_dir.resolve()))
            cpus = ray.cluster_resources().get("CPU", 1)
            concurrency = opts.concurrency or max(1, int(cpus // opts.cpus_per_trial))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=total,
                                            max_concurrent_trials=concurrency,
                                            # a new actor per trial re-imports torch: ~2 s a trial
                                            reuse_actors=True,
                                            trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
                run_config=tune.RunConfig(name="tune", storage_path=storage_path, callbacks=[progress],
                                          verbose=0, failure_config=tune.FailureConfig(max_failures=2)))
        tuner.fit()
    finally:
        progress.bar.close()
        write_report(run_dir)
    return run_dir, len(read_trials(run_dir)) >= total
