"""Programs the compiler once got wrong (issue 11 and the differential fuzzer's finds, docs/fuzzing.md),
each compared with NumPy on every target that runs here."""

from __future__ import annotations

import lumi
import numpy as np
import pytest

TARGETS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def assert_like_numpy(graph: lumi.Graph, target: str, want, *args, rtol: float = 1e-6) -> None:
    """``graph`` compiled for ``target`` gives NumPy's answer ``want`` (a tuple for several outputs)."""
    got = lumi.compile(graph, target)(*args)
    for g, w in zip(*((v if isinstance(v, tuple) else (v,)) for v in (got, want))):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{target}: {g.dtype}{g.shape}, expected {w.dtype}{w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0, equal_nan=True, err_msg=f"target {target}")


@pytest.mark.parametrize("target", TARGETS)
def test_concat_of_transposed_views(target):
    # The cpu target read the transposed operands of a concat as if they were row-major: [40, 44, 48].
    f = lambda x: np.concatenate([x.T, x.T], axis=0).sum(axis=0)
    g = lumi.trace(f, lumi.spec(("batch", 4)))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert_like_numpy(g, target, f(x), x)


@pytest.mark.parametrize("target", TARGETS)
def test_concat_of_reversed_and_strided_views(target):
    f = lambda x: np.concatenate([x[::-1, ::2], x[:, 1::2].T.T, x[::2, ::-2]], axis=0) * 2.0
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert_like_numpy(lumi.trace(f, x), target, f(x), x)


@pytest.mark.parametrize("target", TARGETS)
def test_big_endian_input(target):
    # The cpu target reinterpreted the big-endian bytes as native floats: all ones.
    g = lumi.trace(lambda x: x * 2 + 1, lumi.spec((4,)))
    x = np.arange(4, dtype=np.float32).astype(">f4")
    assert_like_numpy(g, target, np.array([1, 3, 5, 7], np.float32), x)


@pytest.mark.parametrize("target", TARGETS)
def test_unaligned_and_negatively_strided_inputs(target):
    buf = bytearray(12 * 8 + 1)
    x = np.ndarray((3, 4), np.float64, buffer=buf, offset=1)  # not 8-byte aligned
    x[...] = np.arange(12).reshape(3, 4)
    y = np.arange(12, dtype=np.float64).reshape(3, 4)[::-1, ::-1]
    f = lambda x, y: (x - y).sum(axis=1)
    assert_like_numpy(lumi.trace(f, x, y), target, f(x, y), x, y)


@pytest.mark.parametrize("target", TARGETS)
def test_zero_row_batch(target):
    # Reductions over a symbolic batch bound to 0 rows: sums are 0, the mean is NaN, row-wise results are
    # empty. The numpy target failed on the mean (AxisError: its count is a sum of broadcast ones).
    f = lambda x: (x.sum(axis=0), np.exp(x).sum(axis=0, keepdims=True) + 1.0, x.mean(axis=0), x.max(axis=1))
    g = lumi.trace(f, lumi.spec(("batch", 4)))
    x = np.zeros((0, 4), np.float32)
    want = (np.zeros(4, np.float32), np.ones((1, 4), np.float32), np.full(4, np.nan, np.float32),
            np.zeros(0, np.float32))  # what f(x) gives, without NumPy's "mean of empty slice" warning
    assert_like_numpy(g, target, want, x)


@pytest.mark.parametrize("target", TARGETS)
def test_sum_of_a_broadcast_constant(target):
    # Found by the fuzzer on the tree before issue 11's fixes: the numpy target's blocked executor read a
    # constant leaf as a 0-d array and np.sum over its axis raised AxisError (also the zero-row mean).
    from lumi.graph.ir import GraphBuilder

    b = GraphBuilder()
    two = b.add("expand", [b.add("reshape", [b.const(np.float32(2.0))], {"shape": [1]})], {"shape": [2]})
    g = b.build({"out": b.add("sum", [two], {"axes": [0], "keepdims": False})})
    assert_like_numpy(g, target, np.float32(4.0))


@pytest.mark.parametrize("target", TARGETS)
def test_max_over_zero_rows_raises_like_numpy(target):
    # NumPy has no identity for max: the reference interpreter raises, the cpu target returned -inf.
    g = lumi.trace(lambda x: x.max(axis=0), lumi.spec(("batch", 4)))
    x = np.zeros((0, 4), np.float32)
    with pytest.raises(ValueError):
        np.max(x, axis=0)
    with pytest.raises(lumi.LumiError, match="zero-size|no identity|empty"):
        lumi.compile(g, target)(x)


@pytest.mark.parametrize("target", TARGETS)
def test_thousand_op_chain(target):
    # One fused elementwise chain of 1000 ops: the renderer recursed once per op (RecursionError).
    def f(x):
        for _ in range(500):
            x = x * 1.0001 + 0.001
        return x

    g = lumi.trace(f, lumi.spec((8,)))
    assert len(g.nodes) > 1000
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    assert_like_numpy(g, target, f(x), x, rtol=1e-4)


@pytest.mark.parametrize("target", TARGETS)
def test_sum_of_bools_is_a_bool(target):
    # Found by the fuzzer: NumPy's reference makes a bool sum a logical or (its int count cast back to
    # bool); the cpu kernel stored the count itself in the bool byte, so casting it to int gave 2.
    from lumi.graph.ir import GraphBuilder

    b = GraphBuilder()
    x = b.input("x", (2, 2), "bool")
    s = b.add("sum", [x], {"axes": [1], "keepdims": False})
    g = b.build({"any": s, "count": b.add("cast", [s], {"dtype": "int32"})})
    x = np.array([[False, True], [True, True]])
    got_any, got_count = lumi.compile(g, target)(x)
    assert got_any.view(np.uint8).tolist() == [1, 1]  # a bool is stored as 0 or 1
    assert got_count.tolist() == [1, 1]


@pytest.mark.parametrize("target", TARGETS)
def test_bool_subtract_is_refused_like_numpy(target):
    # Found by the fuzzer (log_softmax of np.any's result): NumPy refuses ``-`` on bools, so the reference
    # interpreter raised at run time, while the cpu target returned numbers. Refusing at trace time is as good.
    x = np.array([True, False, True])
    with pytest.raises(TypeError):
        np.subtract(x, x[::-1])
    try:
        g = lumi.trace(lambda x: x - x[::-1], x)
    except lumi.LumiError:
        return
    with pytest.raises(lumi.LumiError):
        lumi.compile(g, target)(x)


@pytest.mark.parametrize("target", TARGETS)
def test_int_cast_round_trip_gives_positive_zero(target):
    # Found by the fuzzer: float -> int -> float of a value in (-1, 0) is +0.0 in NumPy (and C), but the cpu
    # kernel produced -0.0, so dividing by it gave -inf instead of +inf.
    f = lambda x: (x.astype(np.int32).astype(np.float64), 1.0 / x.astype(np.int32).astype(np.float64))
    x = np.array([-0.1427, 0.5, -2.5])
    back, q = lumi.compile(lumi.trace(f, x), target)(x)
    assert np.signbit(back).tolist() == [False, False, True]
    np.testing.assert_array_equal(q, [np.inf, np.inf, -0.5])


@pytest.mark.parametrize("target", TARGETS)
def test_max_of_empty_constant_raises_a_lumi_error(target):
    # Found by the fuzzer: constant folding ran NumPy's max over a zero-length axis of a constant, and
    # lumi.compile let NumPy's ValueError out instead of a LumiError saying what is wrong.
    from lumi.graph.ir import GraphBuilder

    b = GraphBuilder()
    m = b.add("max", [b.const(np.zeros((0, 0), np.float32))], {"axes": [1], "keepdims": False})
    g = b.build({"out": m})
    with pytest.raises(lumi.LumiError):
        g.run(backend="numpy")
    with pytest.raises(lumi.LumiError):
        lumi.compile(g, target)()


@pytest.mark.parametrize("target", TARGETS)
def test_an_index_out_of_range_is_refused_where_the_result_is_empty(target):
    # Found by the fuzzer: gathering rows of zero columns reads no element, so the kernel never saw the
    # bad index (an input, or a one-element constant that kernels take as a literal); NumPy refuses it.
    from lumi.graph.ir import GraphBuilder

    b = GraphBuilder()
    x = b.input("x", (2, 0), "float32")
    index = b.input("index", (1,), "int64")
    data = b.add("add", [x, x])
    literal = b.add("gather", [b.add("add", [data, data]), b.const(np.array([2]))], {"axis": 0})
    g = b.build({"out": b.add("gather", [data, index], {"axis": 0})})
    x, bad = np.zeros((2, 0), np.float32), np.array([2])
    with pytest.raises(lumi.errors.IndexOutOfRange):
        g.run(x, bad, backend="numpy")
    with pytest.raises(lumi.errors.IndexOutOfRange, match="index 2 is out of range for axis 0 of size 2"):
        lumi.compile(g, target)(x, bad)
    assert lumi.compile(g, target)(x, np.array([-2])).shape == (1, 0)
    with pytest.raises(lumi.errors.IndexOutOfRange, match="index 2"):
        lumi.compile(b.build({"out": literal}), target)(x, bad)
