"""Graphs of any size: no recursion proportional to the graph, bounded kernels, a budget for serving."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from corpus import chain
from lumi.compiler.groups import MAX_GROUP_NODES, Group
from lumi.errors import GraphTooLarge


@pytest.mark.parametrize("target", ["cpu", "numpy"])
def test_a_thousand_op_chain_compiles_and_matches_numpy(target):
    f = chain(1000)
    g = lumi.trace(f, lumi.spec((64,)))
    x = np.linspace(-2, 2, 64, dtype=np.float32)
    np.testing.assert_allclose(lumi.compile(g, target)(x), f(x.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_a_ten_thousand_node_chain_compiles_in_bounded_kernels():
    f = chain(4000)
    g = lumi.trace(f, lumi.spec(("batch", 8)))
    assert len(g.nodes) > 10_000
    plan = lumi.compile(g, "cpu")
    groups = [st for st in plan._steps if isinstance(st, Group)]
    assert max(len(gr.stmts) for gr in groups) <= MAX_GROUP_NODES
    assert len(groups) <= 2 * len(plan.graph.nodes) // MAX_GROUP_NODES + 1  # split only where the cap says
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(plan(x), g.run(x, backend="numpy"), rtol=1e-5, atol=1e-5)


def test_a_long_chain_of_views_outside_kernels_runs():
    def f(x):
        for _ in range(1500):  # alternating views that no pass merges, read by a library concat
            x = x.T[::-1]
        return np.concatenate([x, x], axis=0)

    g = lumi.trace(f, lumi.spec((3, 3)))
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.testing.assert_array_equal(lumi.compile(g, "cpu")(x), f(x))


def test_budget_refuses_graphs_over_the_node_or_compile_time_budget():
    g = lumi.trace(chain(50), lumi.spec((4,)))
    assert lumi.compiler.check_budget(g, max_nodes=10_000, max_seconds=60) >= 0
    with pytest.raises(GraphTooLarge, match=r"over the budget of 100 \(max_graph_nodes"):
        lumi.compiler.check_budget(g, max_nodes=100, max_seconds=60)
    with pytest.raises(GraphTooLarge, match="over the compile budget of 0 s"):
        lumi.compiler.check_budget(g, max_nodes=10_000, max_seconds=0)
