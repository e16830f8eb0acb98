"""``lumi.trace``: run a function on lazy tensors and keep the graph it records."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import TraceError
from . import shapes as S
from .dtypes import dtype_name
from .ir import Graph, GraphBuilder
from .tensor import Tensor, lift


@dataclass(frozen=True)
class Spec:
    """An input's shape and dtype; shape entries may be names (symbolic dimensions)."""

    shape: S.Shape
    dtype: str

    def __repr__(self) -> str:
        return f"{self.dtype}{S.fmt(self.shape)}"


def spec(shape, dtype="float32") -> Spec:
    """Describe an input without an example array: ``lumi.spec(("batch", 784), "float32")``."""
    return Spec(S.check_shape(shape), dtype_name(dtype))


class Tracer:
    """Records a graph: make inputs, run NumPy code on them, then name the outputs."""

    def __init__(self):
        self.builder = GraphBuilder()

    def input(self, name: str, example) -> Tensor:
        s = example if isinstance(example, Spec) else spec(np.shape(example), np.asarray(example).dtype)
        return Tensor(self.builder, self.builder.input(name, s.shape, s.dtype))

    def graph(self, outputs: Mapping[str, object]) -> Graph:
        """Build the graph whose outputs are these values (Tensors, arrays or numbers)."""
        ids = {}
        for name, value in outputs.items():
            if isinstance(value, Tensor):
                if value.builder is not self.builder:
                    raise TraceError(f"output {name!r} comes from another trace")
                ids[name] = value.id
            else:
                ids[name] = lift(self.builder, value).id
        return self.builder.build(ids)


def _parameter_names(fn: Callable, n: int) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return params[:n] + [f"x{i}" for i in range(len(params), n)]


def trace(fn: Callable, *example_args) -> Graph:
    """Trace ``fn`` on examples (arrays or :func:`spec`) into a :class:`Graph`.

    Python scalars among the examples are baked in as constants. The result's outputs are
    named ``output`` (one value), ``output_0``, ``output_1``, ... (a tuple), or by key (a dict).
    """
    tracer = Tracer()
    names = _parameter_names(fn, len(example_args))
    args = [
        tracer.input(name, ex) if isinstance(ex, Spec | np.ndarray) else ex
        for name, ex in zip(names, example_args)
    ]
    result = fn(*args)
    if isinstance(result, Mapping):
        outputs = dict(result)
    elif isinstance(result, tuple | list):
        outputs = {f"output_{i}": r for i, r in enumerate(result)}
    else:
        outputs = {"output": result}
    return tracer.graph(outputs)
