"""Ends an embedded Ray's processes once the driver that started them is gone, even by SIGKILL.

Run as a script (`python -I reaper.py DRIVER_PID`, by cluster.py) with a pipe from the driver on
stdin that the driver never writes to: the pipe reads end-of-file exactly when the driver has
died. Until then it notes, once a second, the driver's Ray processes: its children that are Ray
(the GCS, the raylet, Ray's Python monitors) and the raylet's children (agents, workers). A
driver's own subprocesses that are not Ray, and the Ray of any other driver, are never touched.
Imports nothing from nasfpn, so that it starts in a blink and holds little memory.
"""

from __future__ import annotations

import os
import select
import sys

import psutil

GRACE_SECONDS = 3.0


def _is_ray(proc: psutil.Process) -> bool:
    try:
        name = proc.name()
        return (name in ("gcs_server", "raylet") or name.startswith("ray::")
                or any(f"{os.sep}ray{os.sep}" in part for part in proc.cmdline()[:3]))
    except psutil.Error:
        return False


def ray_processes(driver: psutil.Process) -> dict[int, psutil.Process]:
    found: dict[int, psutil.Process] = {}
    try:
        children = driver.children()
    except psutil.Error:
        return found
    for child in children:
        if not _is_ray(child):
            continue
        found[child.pid] = child
        try:
            if child.name() == "raylet":
                found.update((p.pid, p) for p in child.children())
        except psutil.Error:
            pass
    return found


def reap(processes: dict[int, psutil.Process]) -> None:
    """SIGTERM, then SIGKILL after GRACE_SECONDS; psutil refuses a PID that was reused since."""
    alive = []
    for proc in processes.values():
        try:
            proc.terminate()
            alive.append(proc)
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass


def main(driver_pid: int) -> None:
    driver = psutil.Process(driver_pid)
    seen: dict[int, psutil.Process] = {}
    while True:
        seen.update(ray_processes(driver))
        seen = {pid: p for pid, p in seen.items() if p.is_running()}
        readable, _, _ = select.select([sys.stdin], [], [], 1.0)
        if readable and not os.read(sys.stdin.fileno(), 1):
            break  # the driver is gone (it never writes)
    reap(seen)


if __name__ == "__main__":
    main(int(sys.argv[1]))
