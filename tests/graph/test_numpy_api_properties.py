"""Property tests: indexing (gather), assignment, split/stack and einsum trace to graphs equal to NumPy."""

from __future__ import annotations

import lumi
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def same(fn, *args):
    """``fn`` traced on ``args`` and run on the reference interpreter equals ``fn`` run by NumPy."""
    want = fn(*args)
    got = lumi.trace(fn, *args).run(*args, backend="numpy")
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    for w, g in zip(want, got):
        w = np.asarray(w)
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def array(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@st.composite
def index_keys(draw):
    """A shape and a key over it: ints, slices, None, Ellipsis, and up to three integer index arrays
    (constant lists or traced inputs, negative indices included) that broadcast together."""
    shape = draw(shapes)
    index_shape = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple))
    key, traced = [], []
    for d in shape:
        kind = draw(st.sampled_from(["all", "int", "slice", "array", "array", "none"]))
        if kind == "none":  # a new axis, then this dimension whole
            key.append(None)
        if kind == "int":
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            key.append(slice(draw(st.none() | st.integers(-d - 1, d + 1)), draw(st.none() | st.integers(-d - 1, d + 1)),
                             draw(st.sampled_from([None, 1, 2, -1, -2]))))
        elif kind == "array" and sum(isinstance(k, tuple) for k in key) < 3:
            sub = index_shape[draw(st.integers(0, len(index_shape))) :]  # broadcasts against index_shape
            values = np.array(draw(st.lists(st.integers(-d, d - 1), min_size=int(np.prod(sub)),
                                            max_size=int(np.prod(sub))))).reshape(sub).astype(np.int64)
            as_list = draw(st.booleans())
            if not as_list:
                traced.append(values)
            key.append(("list", values.tolist()) if as_list else ("input", len(traced) - 1))
        else:
            key.append(slice(None))
    if draw(st.booleans()) and key:
        cut = draw(st.integers(0, len(key) - 1))
        if all(not isinstance(k, tuple) and k == slice(None) for k in key[cut:]):
            key = [*key[:cut], Ellipsis]
    return shape, key, traced


@SETTINGS
@given(index_keys())
def test_indexing_matches_numpy(case):
    shape, key, traced = case

    def fn(x, *indices):
        def entry(k):
            if isinstance(k, tuple):
                return k[1] if k[0] == "list" else indices[k[1]]
            return k

        return x[tuple(entry(k) for k in key)]

    same(fn, array(shape), *traced)


@SETTINGS
@given(shapes, st.data())
def test_take_and_take_along_axis_match_numpy(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    index = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5)), dtype=np.int64)
    along = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(shape)),
                                        max_size=int(np.prod(shape))))).reshape(shape)
    same(lambda x, i, j: (np.take(x, i, axis=axis), np.take(x, i), np.take_along_axis(x, j, axis=axis)),
         array(shape), index, along)


@st.composite
def assignments(draw):
    """A shape, a key of slices/ints/None (or constant index arrays), and whether the value is a scalar."""
    shape = draw(shapes)
    key = []
    for d in shape:
        kind = draw(st.sampled_from(["all", "int", "slice", "step", "array"]))
        if kind == "int":
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            key.append(slice(draw(st.integers(-d, d)), draw(st.none() | st.integers(-d, d))))
        elif kind == "step":
            key.append(slice(None, None, draw(st.sampled_from([2, -1, -2]))))
        elif kind == "array" and not any(isinstance(k, list) for k in key):
            key.append(draw(st.lists(st.integers(-d, d - 1), min_size=1, max_size=3, unique=True)))
        else:
            key.append(slice(None))
    return shape, tuple(key), draw(st.sampled_from(["scalar", "array", "augmented"]))


@SETTINGS
@given(assignments())
def test_assignment_matches_numpy(case):
    shape, key, value = case
    target_shape = np.zeros(shape)[key].shape

    def fn(x, v):
        y = x.copy()
        if value == "scalar":
            y[key] = 7.5
        elif value == "array":
            y[key] = v
        else:
            y[key] += v * 2
        return y, x

    same(fn, array(shape), array(target_shape, seed=1))


@SETTINGS
@given(shapes, st.data())
def test_assignment_through_traced_indices_matches_numpy(shape, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    scalar = data.draw(st.booleans())
    # NumPy leaves unspecified which of several values written to one position wins: repeat only scalars
    index = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4, unique=not scalar)))
    index -= n * np.array(data.draw(st.lists(st.booleans(), min_size=len(index), max_size=len(index))))
    key = (slice(None),) * axis + (index,)

    def fn(x, i, v):
        y = x.copy()
        y[(slice(None),) * axis + (i,)] = 7.5 if scalar else v
        return y

    same(fn, array(shape), index, array(np.zeros(shape)[key].shape, seed=1))


@SETTINGS
@given(shapes, st.data())
def test_mask_assignment_matches_numpy(shape, data):
    lead = data.draw(st.integers(1, len(shape)))

    def fn(x, v):
        y = x.copy()
        y[x[(slice(None),) * lead + (0,) * (len(shape) - lead)] > 0] = v
        return y

    same(fn, array(shape), array(shape[lead:], seed=1))


@SETTINGS
@given(shapes, st.data())
def test_split_and_stack_match_numpy(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    sections = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    points = sorted(data.draw(st.lists(st.integers(0, n + 1), max_size=3)))
    uneven = data.draw(st.integers(1, 5))

    def fn(x):
        parts = np.split(x, sections, axis=axis)
        return (*parts, *np.split(x, points, axis=axis), *np.array_split(x, uneven, axis=axis),
                np.stack(parts, axis=axis), np.concatenate(parts[::-1], axis=axis), np.hstack(parts),
                np.vstack(parts), np.dstack(parts), np.column_stack(parts))

    same(fn, array(shape))


@st.composite
def einsum_specs(draw):
    """Two or three operands over labels of random sizes; the output keeps a random subset, in random order."""
    labels = "abcdef"
    sizes = {c: draw(st.integers(1, 4)) for c in labels}
    n_ops = draw(st.integers(1, 3))
    ops = [draw(st.lists(st.sampled_from(labels), min_size=1, max_size=3, unique=True)) for _ in range(n_ops)]
    used = sorted(set().union(*ops))
    out = draw(st.permutations(used))[: draw(st.integers(0, len(used)))]
    explicit = draw(st.booleans())
    spec = ",".join("".join(o) for o in ops) + ("->" + "".join(out) if explicit else "")
    return spec, [tuple(sizes[c] for c in o) for o in ops]


@SETTINGS
@given(einsum_specs())
def test_einsum_matches_numpy(case):
    # Sums of many float32 products may be added in another order than NumPy's: compare with the exact (float64)
    # result, within float32's error bound for such a sum (terms x eps x the sum of the terms' magnitudes).
    spec, op_shapes = case
    arrays = [array(s, seed=i) for i, s in enumerate(op_shapes)]
    want = np.einsum(spec, *arrays)
    got = lumi.trace(lambda *xs: np.einsum(spec, *xs), *arrays).run(*arrays, backend="numpy")
    assert (got.shape, got.dtype) == (want.shape, want.dtype)
    exact = np.einsum(spec, *(a.astype(np.float64) for a in arrays))
    magnitude = np.einsum(spec, *(np.abs(a).astype(np.float64) for a in arrays))
    sizes = {c: n for labels, shape in zip(spec.split("->")[0].split(","), op_shapes) for c, n in zip(labels, shape)}
    terms = np.prod(list(sizes.values())) // max(1, exact.size)
    assert np.all(np.abs(got - exact) <= 2 * terms * np.finfo(np.float32).eps * magnitude + 1e-30), (got, exact)


def test_named_einsum_forms_and_tensordot():
    q, k = array((2, 3, 4, 5)), array((2, 3, 6, 5), seed=1)
    x, w, y = array((4, 3)), array((2, 3, 5), seed=2), array((4, 5), seed=3)
    same(lambda q, k: (np.einsum("bhqd,bhkd->bhqk", q, k), np.einsum("...qd,...kd->...qk", q, k),
                       np.tensordot(q, k, axes=([0, 1, 3], [0, 1, 3])), np.tensordot(q[0, 0], k[0, 0].T, 1)), q, k)
    same(lambda x, w, y: np.einsum("bi,oij,bj->bo", x, w, y), x, w, y)
