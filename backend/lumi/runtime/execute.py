"""How a worker runs a graph: compiled once per (graph hash, device) for the best target here, then reused
(``lumi.compile`` keeps the plans)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..compiler import Plan, best_target, compile, is_compiled
from ..graph.ir import Graph


def default_target() -> str:
    """The backend this process runs graphs on: "cuda", "cpu" or "numpy"."""
    return best_target()


def plan_for(graph: Graph) -> Plan:
    """The compiled plan for ``graph`` on this process's device, compiling it on first use."""
    return compile(graph, default_target())


def is_warm(graph_hash: str) -> bool:
    """Whether this process has the graph with this hash compiled for its device already."""
    return is_compiled(graph_hash, default_target())


def execute(graph: Graph, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` on ``arrays`` with its compiled plan and return its outputs in order."""
    values, bindings = graph.bind_inputs(arrays)
    return plan_for(graph).run_bound(values, bindings)
