"""How a worker runs a graph: compiled once per (graph hash, device) for the best target here, then reused."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ..compiler import Plan, best_target, compile
from ..graph.ir import Graph

_PLANS: OrderedDict[tuple[str, str], Plan] = OrderedDict()
_MAX_PLANS = 64
_LOCK = threading.Lock()


def default_target() -> str:
    """The backend this process runs graphs on: "cuda", "cpu" or "numpy"."""
    return best_target()


def _device_key(target: str) -> str:
    if target != "cuda":
        return target
    import cupy

    return f"cuda:{cupy.cuda.Device().id}"


def plan_for(graph: Graph) -> Plan:
    """The compiled plan for ``graph`` on this process's device, compiling it on first use."""
    target = default_target()
    key = (graph.hash, _device_key(target))
    with _LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    plan = compile(graph, target)
    with _LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    return plan


def execute(graph: Graph, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` on ``arrays`` with its compiled plan and return its outputs in order."""
    values, bindings = graph.bind_inputs(arrays)
    return plan_for(graph).run_bound(values, bindings)
