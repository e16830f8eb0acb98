"""``lumi.trace``: run a function on lazy tensors and keep the graph it records."""

from __future__ import annotations

import inspect
import types
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


class ConstantArray(np.ndarray):
    """A NumPy array a traced function reads from its globals or closure (its weights, say). It is that array
    in every NumPy call, evaluated at trace time as before, except that indexing it with a traced array
    (``wte[ids]``, which NumPy itself cannot dispatch) records a gather on it as a constant."""

    def __getitem__(self, key):
        parts = key if isinstance(key, tuple) else (key,)
        traced = [k for k in parts if isinstance(k, Tensor)]
        if traced:
            return lift(traced[0].builder, self.view(np.ndarray))[key]
        return super().__getitem__(key)


def _constant_arrays(value):
    """``value`` with the arrays in it (through dicts, lists and tuples) as :class:`ConstantArray` views;
    ``value`` itself where it holds none, so that a container the function may update stays the caller's."""
    if isinstance(value, np.ndarray) and value.dtype != object and not isinstance(value, ConstantArray):
        return value.view(ConstantArray)
    if isinstance(value, dict):
        new = {k: _constant_arrays(v) for k, v in value.items()}
        return value if all(new[k] is v for k, v in value.items()) else new
    if type(value) in (list, tuple):
        new = type(value)(_constant_arrays(v) for v in value)
        return value if all(a is b for a, b in zip(new, value)) else new
    return value


def _reading_constant_arrays(fn: Callable) -> Callable:
    """``fn`` reading the NumPy arrays it names from its globals and closure as :class:`ConstantArray` s.
    Nothing of the caller's changes: the copy gets its own globals mapping and closure cells."""
    if not isinstance(fn, types.FunctionType):
        return fn
    g = fn.__globals__
    named = {n: _constant_arrays(g[n]) for n in fn.__code__.co_names if n in g}
    cells = tuple(types.CellType(_constant_arrays(c.cell_contents)) if _bound(c) else c for c in fn.__closure__ or ())
    copy = types.FunctionType(fn.__code__, {**g, **named}, fn.__name__, fn.__defaults__, cells or None)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


def _bound(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - a cell whose name is not bound yet raises
    except ValueError:
        return False
    return True


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
    result = _reading_constant_arrays(fn)(*args)
    if isinstance(result, Mapping):
        outputs = dict(result)
    elif isinstance(result, tuple | list):
        outputs = {f"output_{i}": r for i, r in enumerate(result)}
    else:
        outputs = {"output": result}
    return tracer.graph(outputs)
