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

    def input_tree(self, name: str, value) -> object:
        """``value`` with every array (or :func:`spec`) in it, through dicts, lists and tuples, made an input
        named by its path (``params.blocks.0.attn.w``, the order of :func:`flatten`); other leaves (numbers,
        strings) stay as they are."""
        if isinstance(value, Spec | np.ndarray):
            return self.input(name, value)
        if isinstance(value, Mapping):
            return {k: self.input_tree(f"{name}.{k}", v) for k, v in value.items()}
        if type(value) in (list, tuple):
            return type(value)(self.input_tree(f"{name}.{i}", v) for i, v in enumerate(value))
        return value

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


def flatten(name: str, value) -> dict[str, np.ndarray]:
    """The arrays inside ``value`` under the input names :func:`trace` gives them, in the graph's input order:
    ``g(**flatten("params", params), ids=ids)`` runs a graph traced on nested weights."""
    if isinstance(value, np.ndarray):
        return {name: value}
    if isinstance(value, Mapping):
        items = value.items()
    elif type(value) in (list, tuple):
        items = enumerate(value)
    else:
        return {}
    return {k: v for key, item in items for k, v in flatten(f"{name}.{key}", item).items()}


def trace(fn: Callable, *example_args) -> Graph:
    """Trace ``fn`` on examples (arrays or :func:`spec`) into a :class:`Graph`.

    Python scalars among the examples are baked in as constants. Dicts, lists and tuples of arrays (nested
    weights) become one input per array, named by path: ``params.blocks.0.attn.w`` (see :func:`flatten`).
    The result's outputs are named ``output`` (one value), ``output_0``, ``output_1``, ... (a tuple), or by
    key (a dict).
    """
    tracer = Tracer()
    names = _parameter_names(fn, len(example_args))
    args = [tracer.input_tree(name, ex) for name, ex in zip(names, example_args)]
    result = fn(*args)
    if isinstance(result, Mapping):
        outputs = dict(result)
    elif isinstance(result, tuple | list):
        outputs = {f"output_{i}": r for i, r in enumerate(result)}
    else:
        outputs = {"output": result}
    return tracer.graph(outputs)
