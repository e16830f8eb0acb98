"""A graph over serving's node budget is refused at deploy (413, naming the budget), never at its first request."""

from __future__ import annotations

import httpx
import lumi
import numpy as np
from lumi.runtime.config import load_config
from lumi.serving.endpoint import deploy


def test_a_deploy_over_the_node_budget_is_refused_at_deploy_time(gateway):
    budget = load_config().max_graph_nodes

    def f(x):
        for _ in range(budget // 2 + 1):  # two graph nodes a step
            x = x * 1.0001 + 0.001
        return x

    graph = lumi.trace(f, lumi.spec(("batch", 4)))
    assert len(graph.nodes) > budget
    try:
        deploy(graph, "too-big", gateway["url"], gateway["key"])
    except lumi.LumiError as e:
        assert f"over the budget of {budget}" in str(e) and "LUMI_MAX_GRAPH_NODES" in str(e)
    else:
        raise AssertionError("a graph over the node budget was deployed")
    r = httpx.get(f"{gateway['url']}/v1/endpoints/too-big", headers={"Authorization": f"Bearer {gateway['key']}"})
    assert r.status_code == 404  # nothing was stored


def test_a_graph_within_the_budget_deploys_and_answers(gateway):
    graph = lumi.trace(lambda x: np.tanh(x) * 2, lumi.spec(("batch", 4)))
    deploy(graph, "within-budget", gateway["url"], gateway["key"])
    x = np.ones((2, 4), np.float32)
    handle = lumi.Endpoint("within-budget", url=gateway["url"], key=gateway["key"])
    np.testing.assert_allclose(handle(x), np.tanh(x) * 2, rtol=1e-6)
