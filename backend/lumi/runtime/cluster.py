"""Connecting to Ray: a configured cluster, else the machine's shared local backend (``runtime/head.py``)."""

from __future__ import annotations

import logging
import os
import threading
import time

import ray

from ..errors import LumiError
from . import head
from .config import setting

NAMESPACE = "lumi"
_lock = threading.Lock()
_joined: dict | None = None  # the local backend's record while this process is connected to it
_checked_at = 0.0
CHECK_EVERY_S = 2.0


def cuda_device_count() -> int:
    """CUDA devices CuPy can see here (0 without CuPy or a driver)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def connect(address: str | None = None) -> dict:
    """Join the Ray cluster at ``address`` (``ray://host:10001``, ``auto``, ``host:port``) or
    ``$LUMI_RAY_ADDRESS``; without either, join the local backend recorded under ``$LUMI_HOME``,
    starting it first when none is alive. Any earlier connection of this process is closed."""
    global _joined
    with _lock:
        address = address or setting("LUMI_RAY_ADDRESS")
        if ray.is_initialized():
            ray.shutdown()
        _joined = None
        from .jobs import reset  # cached ObjectRefs belong to the connection that made them

        reset()
        common = dict(namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
        if address:
            _init(address, common)
            return info()
        record = head.ensure_head()
        head.use_auth(record)
        # Ray ends a driver 60 s after its GCS is gone; a kernel must survive `lumi stop` elsewhere (the next
        # Lumi call sees the head is dead and joins the new one), so wait for a GCS as long as it takes.
        os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(10 * 365 * 86400))
        _init(record["address"], common)
        _joined = record
        return info()


def _init(address: str, common: dict) -> None:
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError) as e:
        raise LumiError(f"Lumi could not join the Ray cluster at {address}: {e}. Check that it runs "
                        "(`lumi serve` starts the local one; `%lumi connect ADDRESS` joins another).") from None


def ensure_connected() -> None:
    """Connect on first use, and again when the local backend this process joined has stopped
    (``lumi stop`` elsewhere): a dead head is never used."""
    global _checked_at
    if not ray.is_initialized():
        connect()
    elif _joined is not None and time.monotonic() - _checked_at > CHECK_EVERY_S:
        _checked_at = time.monotonic()
        if not head.alive(_joined):
            connect()


def info() -> dict:
    """Where we are connected and what the cluster holds."""
    ctx = ray.get_runtime_context()
    resources = ray.cluster_resources()
    return {
        "address": ctx.gcs_address,
        "local_backend": _joined is not None,
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
        "cpus": resources.get("CPU", 0),
        "gpus": resources.get("GPU", 0),
        "cuda_here": cuda_device_count(),
    }


def disconnect() -> None:
    """Leave the cluster (the local backend keeps running for everyone else)."""
    global _joined
    from .jobs import reset

    with _lock:
        _joined = None
        reset()
        if ray.is_initialized():
            ray.shutdown()


def actor_state(handle) -> str | None:
    """What Ray's control store says of an actor: ALIVE, RESTARTING, DEAD, ... (None when it cannot tell)."""
    try:  # the public state API needs Ray's dashboard, which Lumi's local backend runs without
        from ray._private import state

        return state.actors(actor_id=handle._actor_id.hex())["State"]
    except Exception:
        return None


HEAD_RESOURCE = "node:__internal_head__"  # the resource Ray gives the head node only
_head: tuple[str, str | None] | None = None  # (Ray job id, head node id) of this process's connection


def on_the_head() -> dict:
    """Actor options that place a control-plane actor (dispatcher, gateway, scheduler) on the head node, where
    Ray's own control store lives: losing a worker node never takes Lumi's control plane with it. (These actors
    ask for no resources, so the head always has room; Ray's soft affinity would move them off it once the head
    runs a few worker processes.) Without a head node in sight, no placement."""
    global _head
    connection = ray.get_runtime_context().get_job_id()
    if _head is None or _head[0] != connection:
        heads = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and HEAD_RESOURCE in n.get("Resources", {})]
        _head = (connection, heads[0] if heads else None)
    if _head[1] is None:
        return {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(_head[1], soft=False)}


def request_cluster_resources(bundles: list[dict]) -> None:
    """Ask Ray's autoscaler to keep room for these resource bundles (it adds nodes where it can;
    without an autoscaler this is a no-op)."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles)
