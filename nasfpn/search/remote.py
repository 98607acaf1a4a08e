"""The runs of `baselines`, `confirm` and `calibrate` as Ray tasks on a cluster: one task per
(neck, seed), each holding a trial's resources, as many at once as the cluster holds. Results
come back as each task finishes, so the caller writes each at once and an interrupted command
resumes from what it wrote. Each task opens the session from its description (the caches the
driver, or a GPU worker, filled), as a search's trials do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .cluster import check_resources, connect_ray, device_for, prepare_where_trials_run


@dataclass(frozen=True)
class RemoteRuns:
    """Where the runs go: the Ray cluster at `address`, `cpus` and `gpus` per run."""

    address: str
    cpus: float = 1
    gpus: float = 0

    @property
    def device(self) -> str:
        return device_for(self.gpus)

    def connect(self) -> None:
        """Join the cluster and check that some node can run one of the runs (one line if not)."""
        connect_ray(self.address, None)
        check_resources(self.cpus, self.gpus)

    def prepare(self, spec) -> dict:
        """Pretrain and cache in a task with a run's resources, where the runs train (not on the
        driver); returns the backbone's `fingerprint` and the `precision` the runs resolve to."""
        return prepare_where_trials_run(spec, self.cpus, self.gpus, self.device)

    def train(self, jobs: list[tuple[str, int]], spec) -> Iterator[tuple[int, dict]]:
        """(index into `jobs`, outcome) as each (genotype YAML, seed) finishes. An outcome holds
        `metrics`, or `diverged` (the loss went NaN), or `error` (the task failed)."""
        import ray

        task = ray.remote(_train).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=2)
        threads = max(1, int(self.cpus))
        pending = {task.remote(text, seed, spec, self.device, threads): i for i, (text, seed) in enumerate(jobs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    yield index, ray.get(ref)
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    lines = str(cause).strip().splitlines()
                    yield index, {"error": f"{type(cause).__name__}: {lines[-1] if lines else ''}"[:300]}


def _train(genotype_yaml: str, seed: int, spec, device: str, threads: int) -> dict:
    import torch

    from ..dsl import from_yaml
    from ..proxy.loop import TrainingDiverged
    from ..proxy.session import shared_session
    from ..proxy.train import run_trial

    torch.set_num_threads(threads)
    try:
        return {"metrics": run_trial(from_yaml(genotype_yaml), shared_session(spec, device), seed=seed,
                                     progress=False)}
    except TrainingDiverged as err:
        return {"diverged": str(err)}
