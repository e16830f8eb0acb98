"""A small pool of worker actors, shared round robin by this process."""

from __future__ import annotations

import itertools
import threading

import ray

from .cluster import ensure_connected
from .worker import Worker

POOL_SIZE = 2
_lock = threading.Lock()
_workers: list = []
_next = itertools.count()


def workers() -> list:
    ensure_connected()
    with _lock:
        if not _workers:
            _workers.extend(Worker.remote() for _ in range(POOL_SIZE))
            ray.get([w.info.remote() for w in _workers])
        return list(_workers)


def pick():
    pool = workers()
    return pool[next(_next) % len(pool)]


def reset() -> None:
    with _lock:
        _workers.clear()
