"""Schemathesis against the gateway's own OpenAPI document (request bodies included), in-process over ASGI:
bounded examples per route, valid and invalid, authenticated as a tenant; counts printed; no 5xx allowed."""

from __future__ import annotations

import os
import time
from collections import Counter

import lumi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from lumi.graph.fileformat import dumps
from lumi.serving.gateway import create_app
from lumi.serving.keys import Keyring, add_key, keys_path
from lumi.serving.service import Service
from lumi.serving.store import ModelStore

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = int(os.environ.get("LUMI_SCHEMATHESIS_EXAMPLES", 25))  # per route, per mode, per name choice


@pytest.fixture(scope="module")
def target(ray_cluster, tmp_path_factory):
    """The app, a tenant key and one deployed endpoint ``st`` (two versions)."""
    home = tmp_path_factory.mktemp("schemathesis")
    key = add_key("fuzzer", "api", home=home)
    service = Service(ModelStore(str(home / "models")), "http://testserver")
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    for scale in (1.0, 2.0):
        graph = lumi.trace(lambda x, s=scale: np.tanh(x @ (w * s)), lumi.spec(("batch", 4)))
        service.deploy("st", dumps(graph), Keyring(keys_path(home)).lookup(key), {"max_replicas": 1})
    app = create_app(service, Keyring(keys_path(home)), auth_failures=(1_000_000, 60.0))
    yield app, key
    for live in service.lives.values():
        live.close()


def test_no_route_answers_5xx(target, capsys):
    app, key = target
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {key}"}
    statuses: Counter = Counter()
    errors: list[str] = []
    start = time.perf_counter()
    routes = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        routes += 1
        fixed = [{}] if operation.method.upper() in ("DELETE", "PUT") else [{}, {"name": "st", "version": 1}]
        for mode in schemathesis.GenerationMode:
            for path in fixed:
                params = {k: v for k, v in path.items() if k in operation.path_parameters}

                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(operation.as_strategy(generation_mode=mode, path_parameters=params or None, headers=headers))
                def run(case):
                    response = case.call()
                    statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        errors.append(f"{case.method} {case.formatted_path} -> {response.status_code} "
                                      f"{response.text[:200]}")

                try:
                    run()
                except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
                    statuses["no invalid case"] += 1
    with capsys.disabled():
        print(f"\nschemathesis: {routes} routes, {sum(statuses.values())} requests in "
              f"{time.perf_counter() - start:.0f} s; statuses {dict(sorted(statuses.items(), key=str))}; "
              f"5xx: {len(errors)}")
    assert not errors, errors[:5]
    assert statuses[200] > 0 and sum(statuses.values()) >= routes * EXAMPLES
