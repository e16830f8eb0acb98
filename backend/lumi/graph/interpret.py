"""The reference executor: every primitive through its NumPy reference, one node at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ExecutionError, IndexOutOfRange, LumiError
from . import shapes as S
from .ir import Graph, Node
from .ops import OPS


def describe(node: Node) -> str:
    where = f", created at {node.loc}" if node.loc else ""
    return f"{node.op} (node %{node.id}, {node.dtype}{S.fmt(node.shape)}{where})"


def index_context(graph: Graph, node: Node) -> str:
    """Where a gather's out-of-range index was met: the node, its line, and the input its indices come from."""
    i = node.src[1]
    while graph.nodes[i].op in ("reshape", "permute", "expand", "slice", "cast"):
        i = graph.nodes[i].src[0]
    origin = graph.nodes[i]
    named = f", indices from input {origin.attrs['name']!r}" if origin.op == "input" else ""
    return f" in {describe(node)}{named}"


def interpret(graph: Graph, inputs: Sequence[np.ndarray], bindings: Mapping[str, int]) -> list[np.ndarray]:
    """Run ``graph`` on inputs already checked by :meth:`Graph.bind_inputs`."""
    by_name = dict(zip(graph.inputs, inputs))
    values: list[np.ndarray | None] = [None] * len(graph.nodes)
    for node in graph.nodes:
        if node.op == "input":
            values[node.id] = by_name[node.attrs["name"]]
        elif node.op == "const":
            values[node.id] = graph.constants[node.id]
        else:
            try:
                values[node.id] = run_node(node, [values[s] for s in node.src], bindings)
            except IndexOutOfRange as e:
                raise IndexOutOfRange(e.value, e.axis, e.size, index_context(graph, node)) from None
    return [np.asarray(values[i], order="C") for i in graph.outputs.values()]


def run_node(node: Node, operands: list[np.ndarray], bindings: Mapping[str, int]) -> np.ndarray:
    """Apply one primitive; failures name the op and the line that created it."""
    try:
        out = OPS[node.op].ref(operands, node.attrs, S.resolve(node.shape, bindings))
        return np.asarray(out, dtype=node.dtype)
    except LumiError:
        raise
    except Exception as e:
        raise ExecutionError(f"{describe(node)} failed: {type(e).__name__}: {e}") from e
