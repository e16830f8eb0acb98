"""The everyday NumPy surface: each function traces to primitives that compute what NumPy computes."""

from __future__ import annotations

import lumi
import numpy as np
import pytest

rng = np.random.default_rng(0)
X = rng.standard_normal((4, 6)).astype(np.float32)
X3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
SPECIAL = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 1e17, -3.7, 3.7, 12.25, 45.0, -0.0, np.nan, np.inf,
                    -np.inf])


def _updates(x):
    y = x.copy()
    y[:, :2] += 1
    y[0] = 5
    y[1, ::2] = x[0, :3]
    y[[2, 3], [0, 1]] = -1
    y[y > 2] = 0
    z = x.copy()
    z[..., -1] = z[..., 0] * 2
    z[np.array([True, False, True, False])] = x[0]
    z *= 2
    onehot = np.zeros_like(x)
    onehot[np.arange(len(x)), x.argmax(axis=1)] = 1
    last = x.copy()
    last[np.array([0, 2, 0]) + x[:3, 0].astype(np.int64) * 0, -1] = x[:3, 1]  # repeated rows: the last write wins
    return y, z, x, onehot, last


CASES = {
    "gather": (lambda x, i: (x[i], x[:, i], x[i, :], np.take(x, i, axis=1), x.take([1, 5, 7])), X,
               np.array([[0, 3, -1], [2, 2, 1]])),
    "lists and ranges": (lambda x: (x[[0, -1, 1]], x[range(2)], x[:, [-1], :], x[np.array([True, False])]), X3),
    "several index arrays": (lambda x: (x[:, [0, 1], [2, 3]], x[[0, 1], :, [2, 3]], x[0, :, [1, 2]],
                                        x[:, 0, [1, 2]], x[[[0], [1]], 1:, [0, 3]]), X3),
    "take_along_axis": (lambda x, i: (np.take_along_axis(x, i, axis=1), np.take_along_axis(x, i[:2] % 4, axis=0),
                                      np.take_along_axis(x, i[:, :1], axis=1)),
                        X, np.array([[0, 5, 1, 2, 3, 4], [5, -1, 0, 0, 1, 1], [2, 2, 2, 2, 2, 2],
                                     [1, 0, 3, 3, -4, 4]])),
    "split": (lambda x: (*np.split(x, 3, axis=1), *np.array_split(x, 4, axis=1), *np.hsplit(x, [1, 4]),
                         *np.vsplit(x, 2)), X),
    "stacks": (lambda x: (np.hstack([x, x]), np.vstack([x, x[0]]), np.dstack([x, x]), np.column_stack([x[:, 0], x]),
                          np.stack([x, x], axis=-1), np.hstack([x[0], x[1]])), X),
    "repeat and tile": (lambda x: (np.repeat(x, 2, axis=0), np.repeat(x, 3), np.repeat(x, [1, 0, 2, 1], axis=0),
                                   x.repeat(2, axis=1), np.tile(x, 2), np.tile(x, (2, 1, 3))), X),
    "pad": (lambda x: (np.pad(x, 1), np.pad(x, ((1, 2), (0, 3)), constant_values=((5, 6), (7, 8))),
                       np.pad(x, 2, mode="edge"), np.pad(x, (2, 3), mode="reflect"), np.pad(x, 2, mode="symmetric"),
                       np.pad(x, 2, mode="wrap")), X),
    "flip, roll, axes": (lambda x: (np.flip(x), np.flip(x, 1), np.roll(x, 2), np.roll(x, -1, axis=1),
                                    np.roll(x, (1, 2), axis=(0, 1)), np.moveaxis(x, 0, -1),
                                    np.moveaxis(x, [0, 1], [-1, -2]), np.swapaxes(x, 0, 2), x.mT,
                                    np.squeeze(x[:, None, :, None], axis=(1, 3)), np.expand_dims(x, (0, 2))), X3),
    "triangles and outer": (lambda x: (np.triu(x), np.tril(x, -1), np.triu(x, 2), np.outer(x[0], x[1]),
                                       x * np.tri(4, 6), np.linspace(0, x[0, 0], 5),
                                       np.linspace(x[0], x[1], 3, axis=1), np.zeros_like(x, shape=(2, 3))), X),
    "einsum": (lambda a: (np.einsum("ij,jk->ik", a, a.T), np.einsum("bij,bkj->bik", X3, X3), np.einsum("ij->ji", a),
                          np.einsum("ij->", a), np.einsum("i,i", a[0], a[1]), np.einsum("i,j->ij", a[0], a[1]),
                          np.einsum("...ij,...jk", X3, np.ones((4, 2), np.float32)), np.einsum("ij,ij->i", a, a),
                          np.tensordot(a, a.T, 1), np.tensordot(X3, X3, axes=([1, 2], [1, 2]))), X),
    "cumsum, clip, norm": (lambda x: (np.cumsum(x, axis=1), np.cumsum(x), np.cumsum(x > 0, axis=0), x.cumsum(0),
                                      np.clip(x, -0.5, 0.5), x.clip(min=0), np.linalg.norm(x),
                                      np.linalg.norm(x, axis=1), np.linalg.norm(x, 1, axis=0),
                                      np.linalg.norm(x, np.inf), np.linalg.norm(x, "fro"), np.linalg.norm(x[0], 3),
                                      np.linalg.norm(x, axis=1, keepdims=True)), X),
    "float predicates": (lambda x: (np.isnan(x), np.isinf(x), np.isfinite(x), np.nan_to_num(x), np.sign(x),
                                    np.logaddexp(x, x[::-1]), np.logaddexp(x, -np.inf)), SPECIAL),
    "rounding": (lambda x: (np.floor(x), np.ceil(x), np.round(x), np.round(x, 1), x.round(), np.trunc(x), np.rint(x),
                            np.round(x, -1), np.floor(x.astype(np.float32)), np.round(x.astype(np.float16))), SPECIAL),
    "integer rounding": (lambda i: (np.floor(i), np.round(i), np.sign(i), np.isnan(i), np.cumsum(i), i // 3, i % 3,
                                    i // -2, i % -2, 7 // i[1:], i[1:] % i[:3], -i // 4),
                         np.array([-3, 0, 2, 7], dtype=np.int32)),
    "float floor division": (lambda x: (x // 0.3, x % 0.3, x % -0.7, np.floor_divide(x, 2)), X),
    "reductions with where and dtype": (lambda x: (np.sum(x, where=x > 0), np.mean(x, axis=1, where=x > 0),
                                                   x.sum(dtype=np.float64), x.mean(dtype=np.float64),
                                                   np.max(x, axis=0, initial=0.5),
                                                   np.min(x, where=x > 0, initial=9.0)), np.abs(X) + 0.1),
    "methods": (lambda x: (x.T, x.copy(), x.astype(np.float64), x.reshape(-1), x.flatten(), x.take([0, 1], axis=1),
                           x.repeat(2), x.clip(0, 1), (x > 0).any(), (x > 0).all(axis=0), x.min(0), x.max(),
                           x.argmax(1), x.round(1), len(x) * x), X),
    "assignment": (_updates, X),
}


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("name", CASES)
def test_function_matches_numpy(name, backend):
    fn, *args = CASES[name]
    graph = lumi.trace(fn, *args)
    with np.errstate(all="ignore"):
        want = fn(*args)
    with np.errstate(all="ignore"):  # float16 overflow in the "rounding" inputs, as in NumPy
        results = graph.run(*args, backend=backend)
    for got, w in zip(results, want, strict=True):
        w = np.asarray(w)
        assert (got.shape, got.dtype) == (w.shape, w.dtype)
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_symbolic_batch_through_updates_pads_scans_and_einsum():
    def fn(x):
        B, T, C = x.shape
        y = x.reshape(B, T, 2, C // 2).reshape(B, T, -1)
        y[:, :2] += 1
        y[:, :, -1] = 0
        return (np.pad(y, ((0, 0), (1, 1), (0, 0))), np.cumsum(y, axis=1), np.einsum("btc,bsc->bts", y, y),
                np.repeat(y, 2, axis=2), np.triu(y), np.flip(y, 1), np.linalg.norm(y, axis=-1))

    graph = lumi.trace(fn, lumi.spec(("batch", 5, 4)))
    for n in (1, 3):
        x = rng.standard_normal((n, 5, 4)).astype(np.float32)
        for got, want in zip(graph.run(x, backend="numpy"), fn(x.copy()), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_nested_weights_become_named_inputs():
    from lumi.graph.trace import flatten

    params = {"layers": [{"w": X, "b": X[0]}, {"w": X, "scale": 2.0}], "name": "mlp"}

    def fn(x, params):
        for layer in params["layers"]:
            x = x * layer.get("scale", 1.0) + layer.get("b", 0)
        return x

    graph = lumi.trace(fn, X, params)
    assert list(graph.inputs) == ["x", "params.layers.0.w", "params.layers.0.b", "params.layers.1.w"]
    assert list(flatten("params", params)) == list(graph.inputs)[1:]
    np.testing.assert_allclose(graph(X, **flatten("params", params)), fn(X, params))


def test_shape_arithmetic_on_a_symbolic_dimension_says_what_to_do():
    def fn(x):
        B, C = x.shape
        assert B * 1 == B == "batch" and C // 2 == 4
        return x.reshape(B * C)

    with pytest.raises(lumi.TraceError, match=r"batch \* 8 cannot be computed while tracing; use -1 in reshape"):
        lumi.trace(fn, lumi.spec(("batch", 8)))
    with pytest.raises(lumi.TraceError, match=r"len\(\) of a tensor whose first dimension is symbolic \(batch\)"):
        lumi.trace(lambda x: x[range(len(x))], lumi.spec(("batch", 8)))


def _accumulate_into_numpy(x):
    total = np.zeros(6)
    total += x[0]
    return total


@pytest.mark.parametrize(("fn", "message"), [
    (_accumulate_into_numpy, r"numpy\.add into out=.*write a = a \+ t"),
    (lambda x: x[x > 0], r"traced boolean mask.*np\.where\(mask, x, 0\)"),
    (lambda x: np.eye(4)[x.argmax(axis=1)], r"Indexing a NumPy array with a traced array.*np\.take\(table, ids"),
    (lambda x: np.einsum("ii->i", x[:, :4]), r"numpy\.einsum is not supported .*repeated within one operand"),
    (lambda x: np.pad(x, 1, mode="median"), r"numpy\.pad .*mode='median'"),
    (lambda x: np.linalg.norm(x, 2), r"numpy\.linalg\.norm .*ord=2 of a matrix"),
    (lambda x: np.cumprod(x), r"numpy\.cumprod is not supported"),
])
def test_what_cannot_be_traced_is_refused_with_the_way_out(fn, message):
    with pytest.raises(lumi.LumiError, match=message):
        lumi.trace(fn, X)
