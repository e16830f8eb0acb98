"""Connecting to Ray: an existing cluster when configured, else an embedded local one."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading

import ray

NAMESPACE = "lumi"
EMBEDDED_LOGICAL_GPUS = 4
_lock = threading.Lock()


def cuda_device_count() -> int:
    """CUDA devices CuPy can see here (0 without CuPy or a driver)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def local_head() -> str | None:
    """The address of a head started on this machine with ``ray start --head`` (Binder's
    ``start`` script does), if one is answering; Ray records it in ``<tmp>/ray/ray_current_cluster``."""
    tmp = os.environ.get("TMPDIR", "/tmp") if sys.platform.startswith("linux") else "/tmp"
    path = os.path.join(tmp, "ray", "ray_current_cluster")
    try:
        with open(path) as f:
            address = f.read().strip()
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=0.5):
            return address
    except (OSError, ValueError):
        return None


def connect(address: str | None = None) -> dict:
    """Join the Ray cluster at ``address`` (``ray://host:10001``, ``auto``), ``$LUMI_RAY_ADDRESS``,
    or a local head already running (``ray start --head``); else start an embedded local Ray
    with all CPUs, and logical GPUs on a machine without any so that GPU-shaped workers
    schedule (they then run the CPU fallback)."""
    with _lock:
        address = address or os.environ.get("LUMI_RAY_ADDRESS") or local_head()
        if ray.is_initialized():
            if address is None:
                return info()
            ray.shutdown()
        common = dict(namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
        if address:
            ray.init(address=address, **common)
        else:
            gpus = cuda_device_count() or EMBEDDED_LOGICAL_GPUS
            ray.init(
                address="local",  # a new cluster, even where Ray's file names a head that has died
                num_cpus=os.cpu_count(),
                num_gpus=gpus,
                include_dashboard=False,
                object_store_memory=int(os.environ.get("LUMI_OBJECT_STORE_BYTES", 200 << 20)),
                **common,
            )
        return info()


def ensure_connected() -> None:
    if not ray.is_initialized():
        connect()


def info() -> dict:
    """Where we are connected and what the cluster holds."""
    ctx = ray.get_runtime_context()
    resources = ray.cluster_resources()
    return {
        "address": ctx.gcs_address,
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
        "cpus": resources.get("CPU", 0),
        "gpus": resources.get("GPU", 0),
        "cuda_here": cuda_device_count(),
    }


def disconnect() -> None:
    with _lock:
        if ray.is_initialized():
            ray.shutdown()
