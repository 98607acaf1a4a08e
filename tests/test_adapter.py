"""The private Ray APIs nasfpn reaches, each through one function of nasfpn/search/adapter.py,
exercised here on the installed Ray so that an upgrade that breaks one fails here, naming the
function; and no other module of the package reaches a private Ray or Optuna API."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import ray

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = f"ray {ray.__version__}, optuna {optuna.__version__}"


def _fresh_process(code: str, where: str) -> dict:
    """Run `code` in a new interpreter (no Ray connected, Ray's constants as at import); its
    last line of output is JSON."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"{where} ({VERSIONS}) failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.ray
def test_set_ray_cluster_constant_makes_ray_take_the_loopback_address():
    where = "adapter.set_ray_cluster_constant"
    found = _fresh_process("""
import json, os
os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
import ray
from ray._private import ray_constants, services
from nasfpn.search.adapter import set_ray_cluster_constant
found = {"has_constant": hasattr(ray_constants, "ENABLE_RAY_CLUSTER"),
         "at_import": getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)}
set_ray_cluster_constant(False)
found["off"] = ray_constants.ENABLE_RAY_CLUSTER
found["address_when_off"] = services.get_node_ip_address()
set_ray_cluster_constant(None)
found["restored"] = ray_constants.ENABLE_RAY_CLUSTER
print(json.dumps(found))
""", where)
    assert found["has_constant"], f"{where}: ray._private.ray_constants.ENABLE_RAY_CLUSTER is gone ({VERSIONS})"
    assert found["off"] is False and found["address_when_off"] == "127.0.0.1", (
        f"{where}: with the constant off Ray no longer takes 127.0.0.1 as this node's address: {found} ({VERSIONS})")
    assert found["restored"] == found["at_import"], (
        f"{where}(None) does not restore the value Ray made at import: {found} ({VERSIONS})")


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.2 is a local address on Linux only")
def test_init_ray_at_starts_a_ray_whose_node_has_that_address():
    # 127.0.0.2: an address Ray never picks by itself, so the node having it shows the private
    # keyword reached ray.init and was honoured (and the constant off keeps Ray from rewriting it)
    where = "adapter.init_ray_at"
    found = _fresh_process("""
import json, logging, os
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
import ray
from nasfpn.search.adapter import init_ray_at, set_ray_cluster_constant
set_ray_cluster_constant(False)
init_ray_at("127.0.0.2", address="local", num_cpus=1, include_dashboard=False, logging_level=logging.ERROR,
            log_to_driver=False)
try:
    nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
    worker = ray.get(ray.remote(ray.util.get_node_ip_address).remote())
    print(json.dumps({"nodes": nodes, "driver": ray.util.get_node_ip_address(), "worker": worker}))
finally:
    ray.shutdown()
""", where)
    assert found == {"nodes": ["127.0.0.2"], "driver": "127.0.0.2", "worker": "127.0.0.2"}, (
        f"{where}: the node does not have the address it was given: {found} ({VERSIONS})")


FOREIGN = ("ray", "optuna")
HOLDS_THEIR_OBJECTS = ("search", "export", "cli")  # the layers Ray and Optuna objects reach


def _private_uses(path: Path) -> list[str]:
    """Where a module names a private Ray or Optuna API: an underscore attribute of something
    imported from ray or optuna (in the layers that hold their objects: of anything but self),
    an underscore keyword argument of a call into them, a module path such as 'ray._private...'
    in a string or an import, or an Optuna Trial built directly."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    any_object = path.relative_to(ROOT / "nasfpn").parts[0] in HOLDS_THEIR_OBJECTS
    foreign = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            foreign |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in FOREIGN}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in FOREIGN:
            foreign |= {a.asname or a.name for a in node.names}

    def root(expr):
        while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
            expr = expr.value if not isinstance(expr, ast.Call) else expr.func
        return expr.id if isinstance(expr, ast.Name) else None

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and private(node.attr) and (
                root(node) in foreign or (any_object and root(node) not in ("self", "cls"))):
            found.append(f"{where}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and root(node.func) in foreign:
            found += [f"{where}: {k.arg}=" for k in node.keywords if k.arg and private(k.arg)]
            name = ast.unparse(node.func)
            if name in ("optuna.Trial", "optuna.trial.Trial", "Trial"):
                found.append(f"{where}: {name}(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = [w for w in node.value.replace("`", " ").split() if w.split(".")[0] in FOREIGN]
            found += [f"{where}: '{w}'" for w in words if any(private(p) for p in w.split("."))]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.level == 0 and names[0].split(".")[0] in FOREIGN:
                names += [f"{names[0]}.{a.name}" for a in node.names]
            found += [f"{where}: import {n}" for n in names
                      if n.split(".")[0] in FOREIGN and any(private(p) for p in n.split("."))]
    return found


def test_private_ray_and_optuna_apis_are_reached_from_the_adapter_only():
    modules = [p for p in sorted((ROOT / "nasfpn").rglob("*.py")) if p != ROOT / "nasfpn" / "search" / "adapter.py"]
    found = [use for path in modules for use in _private_uses(path)]
    assert found == [], "private Ray/Optuna APIs outside nasfpn/search/adapter.py:\n" + "\n".join(found)
    assert _private_uses(ROOT / "nasfpn" / "search" / "adapter.py"), "the scan no longer sees the adapter's uses"
