"""How a worker runs a graph: the best backend on this device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph.interpret import interpret
from ..graph.ir import Graph


def execute(graph: Graph, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` on ``arrays`` and return its outputs in order."""
    values, bindings = graph.bind_inputs(arrays)
    return interpret(graph, values, bindings)


def default_target() -> str:
    """The backend this process runs graphs on: "cuda", "cpu" or "numpy"."""
    return "numpy"
