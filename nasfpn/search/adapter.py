"""The private Ray and Optuna APIs nasfpn reaches, one function each, and nowhere else.

Each one is pinned to the installed versions by tests/test_adapter.py: an upgrade that moves or
drops one fails there, naming the function, before a search meets it. Optuna's are all public
today (ask-and-tell, `study.tell` by trial number, `enqueue_trial`), so only Ray's are here.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

NOT_A_CLUSTER = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def set_ray_cluster_constant(value: Optional[bool]) -> None:
    """Set `ray._private.ray_constants.ENABLE_RAY_CLUSTER`, the constant Ray makes at import of
    $RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER; None: as Ray would make it from the environment now.

    Why: while it is False Ray takes the loopback address as this node's address (Ray has no
    public option for that), so an embedded Ray started then listens on 127.0.0.1 only. Ray
    reads the variable once, at import, so a Ray imported before the variable was set needs
    the constant set too; one not imported yet reads the variable."""
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None:
        return
    if value is None:
        setting = os.environ.get(NOT_A_CLUSTER)
        value = setting.lower() in ("1", "true") if setting is not None else not constants.IS_WINDOWS_OR_OSX
    constants.ENABLE_RAY_CLUSTER = value


def init_ray_at(node_ip: str, **init_args: Any) -> None:
    """`ray.init(_node_ip_address=node_ip, ...)`: start a Ray instance whose node has the address
    `node_ip`. Why: `_node_ip_address` is the keyword (private, taken from **kwargs) that makes
    the driver and the processes it starts use that address rather than one Ray picks from the
    network; with the cluster constant off (see set_ray_cluster_constant) it stays the loopback
    address."""
    import ray

    ray.init(_node_ip_address=node_ip, **init_args)
