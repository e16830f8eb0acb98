"""Helpers for the store tests."""

from __future__ import annotations

import os
import time

import ray


def restart(actor_name: str) -> None:
    """Kill the store's actor and wait for Ray to restart it: a new process, which loads what was persisted."""
    actor = ray.get_actor(actor_name, namespace="lumi")
    pid = lambda: ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=60)  # noqa: E731
    before = pid()
    ray.kill(actor, no_restart=False)
    deadline = time.monotonic() + 60
    while pid() == before:  # ray.kill returns before the process is gone
        assert time.monotonic() < deadline, "the actor was not restarted"
        time.sleep(0.1)
