"""Ray for a search: join the user's cluster as they configured it, or start an embedded
single-node Ray that nothing on the network can reach.

Ray has no option to bind its servers to the loopback interface: it binds them to the node's
address, which `ray.init(_node_ip_address="127.0.0.1")` turns back into the machine's network
address. Only when Ray is told this machine is no cluster (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
read at import; the constant behind it when Ray was imported first) is the node's address the
loopback one; then the GCS, the raylet, the object manager, the agents, the driver and every
worker listen on 127.0.0.1 only. This module is the one place that sets it (the two private
Ray APIs involved are reached through adapter.py).

A driver killed with SIGKILL cannot stop the Ray it started: the GCS and the raylet share its
fate, the workers follow within seconds, but the agents linger (about 20 s) while they try to
report to the dead GCS. `reaper.py` watches the driver and ends them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .adapter import NOT_A_CLUSTER, init_ray_at, set_ray_cluster_constant
from .errors import SearchError

_reapers: list[subprocess.Popen] = []


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


@contextlib.contextmanager
def _single_machine():
    """While Ray starts, make it take the loopback address as this node's address. The setting is
    undone afterwards: the processes Ray started keep their address, and the driver's own
    subprocesses (a `ray start` of the user's, say) see the environment they were given."""
    saved = os.environ.get(NOT_A_CLUSTER)
    os.environ[NOT_A_CLUSTER] = "0"
    set_ray_cluster_constant(False)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(NOT_A_CLUSTER, None)
        else:
            os.environ[NOT_A_CLUSTER] = saved
        set_ray_cluster_constant(None)


def _start_reaper() -> None:
    """A watcher in its own session (Ctrl-C does not reach it) that ends this driver's Ray
    processes once the driver is gone; it learns that from the pipe closing."""
    reaper = subprocess.Popen([sys.executable, "-I", str(Path(__file__).with_name("reaper.py")), str(os.getpid())],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    _reapers.append(reaper)  # the write end of the pipe stays open as long as this process lives


def connect_ray(address: Optional[str], cpus: Optional[int]) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS); else start an embedded single-node Ray
    bound to 127.0.0.1. Returns which: "embedded", or the address joined."""
    address = address or os.environ.get("RAY_ADDRESS")
    import ray

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
    with _single_machine():
        init_ray_at("127.0.0.1", address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
                    logging_level=logging.ERROR, log_to_driver=False)
    _start_reaper()
    return "embedded"


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse, before anything starts, a trial that no node of the cluster could ever run (Tune
    would keep it pending forever with no word)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    if cpus_per_trial > most_cpus:
        raise SearchError(f"--cpus-per-trial {cpus_per_trial:g}: no node of the Ray cluster has that many "
                          f"CPUs (the largest has {most_cpus:g}); ask for fewer, or give the embedded Ray "
                          "more with --cpus")
    if gpus_per_trial > 0 and most_gpus == 0:
        raise SearchError(f"--gpus-per-trial {gpus_per_trial:g}: the Ray cluster has no GPU")
    if gpus_per_trial > most_gpus:
        raise SearchError(f"--gpus-per-trial {gpus_per_trial:g}: no node of the Ray cluster has that many "
                          f"GPUs (the largest has {most_gpus:g})")
    if not any(r.get("CPU", 0) >= cpus_per_trial and r.get("GPU", 0) >= gpus_per_trial for r in nodes):
        raise SearchError(f"--cpus-per-trial {cpus_per_trial:g} with --gpus-per-trial {gpus_per_trial:g}: no node "
                          "of the Ray cluster has both; ask for fewer")


def device_for(gpus: float) -> str:
    """Where a run holding `gpus` GPUs trains: a GPU (its share of one, as Ray assigned it) or the CPU."""
    return "cuda" if gpus > 0 else "cpu"


def _open_session(spec, device: str) -> dict:
    session = spec.open(device)
    return {"feature_source": session.feature_source, "fingerprint": session.backbone_fingerprint,
            "precision": session.precision}


def prepare_where_trials_run(spec, cpus_per_trial: float, gpus_per_trial: float, device: str) -> dict:
    """Open the session of `spec` once in a Ray task that holds a trial's resources, so that the
    backbone is pretrained and its features cached on a trial's device (a GPU worker), not on
    the driver's CPU; the caches it fills are the ones the trials read. Returns what the trials
    there will train with: `feature_source`, the backbone's `fingerprint`, the resolved
    `precision`; a failure there is one line."""
    import ray

    task = ray.remote(_open_session).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)
    try:
        return ray.get(task.remote(spec, device))
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None) or exc
        raise SearchError(f"preparing the proxy on a {device} worker failed: {type(cause).__name__}: "
                          f"{str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}") from None
