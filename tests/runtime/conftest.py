"""A private dispatcher per test (``make_dispatcher(env, workers)``), killed with its workers after it."""

from __future__ import annotations

import uuid

import pytest
import ray
from dispatchers import SMALL_WORKERS
from lumi.runtime.dispatcher import start_dispatcher


@pytest.fixture
def make_dispatcher(ray_cluster):
    made = []

    def make(env=None, workers=2):
        d = start_dispatcher(f"test-dispatcher-{uuid.uuid4().hex[:6]}", env={**SMALL_WORKERS, **(env or {})},
                             workers=workers)
        made.append(d)
        return d

    yield make
    for d in made:
        ray.kill(d)
