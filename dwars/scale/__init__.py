"""Scale-out on Ray: hyper-parameter sweeps (:mod:`dwars.scale.sweep`) and fleet backtests (:mod:`dwars.scale.fleet`).

Ray is an optional extra (``pip install 'dwars[scale]'``) and only the offline tools import it: the Pi's runtime
never does. Everything runs the same on a laptop (a local Ray instance, started and stopped by the command) and
on a cluster (``--address``, the head node's address; see docs/scale.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dwars.errors import DwarsError


def require_ray() -> Any:
    """The ``ray`` module, or a clear error saying which extra to install."""
    try:
        import ray
    except ImportError as err:
        raise DwarsError(f"this command runs on Ray: pip install 'dwars[scale]' ({err})") from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of a ``with`` block and yield the ``ray`` module.

    Parameters
    ----------
    address : a running cluster (``"ray://head:10001"``, ``"head:6379"`` or ``"auto"``); None starts a local Ray
        instance on this machine, stopped again at the end of the block.
    num_cpus : the CPUs a local instance may use (None: all cores). Ignored with ``address``: a cluster has its
        own resources.

    A session that is already connected (a test, a notebook) is used as it is and left running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if address:
        options["address"] = address
    else:
        options["address"] = "local"  # a fresh instance: never a stray cluster of an earlier run on this machine
        options["num_cpus"] = num_cpus
    try:
        ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as err:
        if not address:
            raise DwarsError(f"cannot start a local Ray instance ({err})") from None
        hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                "; a cluster started with `ray start` asks for its token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(or copy ~/.ray/auth_token from the head)")
        raise DwarsError(f"--address {address!r}: cannot connect to the Ray cluster ({err}){hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs the connected Ray cluster offers (all its nodes)."""
    return int(ray.cluster_resources().get("CPU", 0))
