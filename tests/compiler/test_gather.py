"""Gather: an indexed load fused into its consumer's kernel, NumPy's semantics, indices checked on every target."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from lumi.errors import IndexOutOfRange
from lumi.graph.ir import Graph, GraphBuilder

from .conftest import assert_cuda_compiles

TARGETS = ["numpy", "cpu"]
RNG = np.random.default_rng(0)


def embedding_graph(vocab: int = 11, width: int = 6, dtype: str = "float32", index_dtype: str = "int64") -> Graph:
    """``wte[ids] + wpe[:n]``: a token embedding plus a position table, as GPT-2 starts."""
    b = GraphBuilder()
    wte = b.input("wte", (vocab, width), dtype)
    ids = b.input("ids", ("batch",), index_dtype)
    pos = b.input("pos", ("batch", width), dtype)
    return b.build({"h": b.add("add", [b.add("gather", [wte, ids], {"axis": 0}), pos])})


def gather_graph(data_shape, index_shape, axis: int, data_view=None) -> Graph:
    b = GraphBuilder()
    data = b.input("data", data_shape, "float64")
    if data_view is not None:
        data = b.add(*data_view(data))
    index = b.input("index", index_shape, "int64")
    out = b.add("gather", [data, index], {"axis": axis})
    return b.build({"out": b.add("mul", [out, out])})


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_embedding_lookup_plus_position_matches_numpy(target, dtype):
    g = embedding_graph(dtype=dtype)
    wte, pos = RNG.standard_normal((11, 6)).astype(dtype), RNG.standard_normal((5, 6)).astype(dtype)
    ids = np.array([0, 10, -1, -11, 3])
    np.testing.assert_array_equal(lumi.compile(g, target)(wte, ids, pos), wte[ids] + pos)


def test_embedding_lookup_plus_position_is_one_kernel():
    for target in ("cpu", "cuda"):
        plan = lumi.compile(embedding_graph(), target)
        assert [k.kind for k in plan.kernels] == ["elementwise"], target


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("data_shape", "index_shape", "axis"), [
    ((7, 3, 4), (2, 5), 0), ((7, 3, 4), (6,), 1), ((2, 3, 4), (3, 2), 2), ((9,), (4, 4), 0), ((5, 1), (0,), 0),
])
def test_gather_along_any_axis_with_any_index_shape(target, data_shape, index_shape, axis):
    g = gather_graph(data_shape, index_shape, axis)
    data = RNG.standard_normal(data_shape)
    n = data_shape[axis]
    index = RNG.integers(-n, n, size=index_shape)
    want = np.take(data, index, axis=axis) ** 2
    np.testing.assert_array_equal(lumi.compile(g, target)(data, index), want)


@pytest.mark.parametrize("target", TARGETS)
def test_gather_reads_data_through_a_strided_view(target):
    g = gather_graph((4, 6), (3,), 0, lambda d: ("permute", [d], {"axes": [1, 0]}))
    data, index = RNG.standard_normal((4, 6)), np.array([5, 0, -2])
    np.testing.assert_array_equal(lumi.compile(g, target)(data, index), data.T[index] ** 2)


def test_gather_from_a_view_strides_cannot_express_runs_in_the_library():
    # a slice then a reshape of the data needs two stacked views: the gather runs in NumPy, still correct
    def view(d):
        return "slice", [d], {"slices": [[0, None, 2], [0, None, 1]]}

    b = GraphBuilder()
    data = b.input("data", (8, 3), "float64")
    v = b.add("reshape", [b.add(*view(data))], {"shape": [12]})
    index = b.input("index", (5,), "int64")
    g = b.build({"out": b.add("gather", [v, index], {"axis": 0})})
    plan = lumi.compile(g, "cpu")
    assert [k.kind for k in plan.kernels] == ["gather"]
    d, i = RNG.standard_normal((8, 3)), np.array([11, 0, 3, -1, 7])
    np.testing.assert_array_equal(plan(d, i), d[::2].reshape(12)[i])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bad", [11, -12, 2**40])
def test_an_index_out_of_range_raises_naming_the_input_and_value(target, bad):
    g = embedding_graph()
    wte, pos = np.zeros((11, 6), np.float32), np.zeros((3, 6), np.float32)
    plan = lumi.compile(g, target)
    with pytest.raises(IndexOutOfRange, match=rf"index {bad} is out of range for axis 0 of size 11.*input 'ids'"):
        plan(wte, np.array([1, bad, 2]), pos)
    np.testing.assert_array_equal(plan(wte, np.array([1, 2, 3]), pos), np.zeros((3, 6)))  # the plan still works
    with pytest.raises(IndexOutOfRange, match="input 'ids'"):
        g.run(wte, np.array([bad]), pos[:1], backend="numpy")


def test_int32_indices_and_the_reference_interpreter_agree():
    g = embedding_graph(index_dtype="int32")
    wte, pos = RNG.standard_normal((11, 6)).astype(np.float32), np.zeros((2, 6), np.float32)
    ids = np.array([4, -3], np.int32)
    np.testing.assert_array_equal(g.run(wte, ids, pos, backend="numpy"), wte[ids])
    np.testing.assert_array_equal(lumi.compile(g, "cpu")(wte, ids, pos), wte[ids])


@pytest.mark.gpu
def test_gather_on_cuda_matches_numpy_and_checks_indices():
    g = embedding_graph()
    wte, pos = RNG.standard_normal((11, 6)).astype(np.float32), RNG.standard_normal((3, 6)).astype(np.float32)
    plan = lumi.compile(g, "cuda")
    np.testing.assert_array_equal(plan(wte, np.array([0, -1, 5]), pos), wte[[0, -1, 5]] + pos)
    with pytest.raises(IndexOutOfRange, match="index 11"):
        plan(wte, np.array([0, 11, 5]), pos)


def test_generated_gather_cuda_compiles(tmp_path):
    graphs = [embedding_graph(), embedding_graph(dtype="float16"), gather_graph((7, 3, 4), (2, 5), 1)]
    assert_cuda_compiles([k.source for g in graphs for k in lumi.compile(g, "cuda").kernels
                          if k.kind != "gather"], tmp_path)
