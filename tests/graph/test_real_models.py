"""Real NumPy model code, written the way public tutorials write it, traces unmodified.

Each program traces, exports and loads, and runs equal to eager NumPy on the reference interpreter and on the
compiled ``cpu`` target; the ``cuda`` target's generated kernels pass ``nvcc --ptx`` (running them needs a GPU).
"""

from __future__ import annotations

import copy
import inspect

import lumi
import numpy as np
import pytest
from compiler.conftest import assert_cuda_compiles
from corpus import (
    apply_rotary,
    gpt2,
    gpt2_params,
    llama_attention,
    llama_block,
    llama_params,
    randn,
    rms_norm,
    rng,
    rope_tables,
    softmax,
)
from lumi.graph.trace import flatten


def check(fn, *args, tmp_path, rtol=1e-4, atol=1e-5):
    """Trace ``fn`` on ``args``; the loaded graph equals eager NumPy on every target."""
    want = fn(*copy.deepcopy(args))  # eager NumPy may update its arguments in place (a KV cache)
    want = want if isinstance(want, tuple) else (want,)
    graph = lumi.trace(fn, *args)
    path = tmp_path / "model.lumi"
    graph.export(path)
    loaded = lumi.load(path)
    assert loaded.hash == graph.hash
    named = {}
    for name, value in zip(inspect.signature(fn).parameters, args):
        named.update(flatten(name, value))
    assert list(named) == list(loaded.inputs)
    for backend in ("numpy", "cpu"):
        got = loaded.run(**named, backend=backend)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            w = np.asarray(w)
            assert (g.shape, g.dtype) == (w.shape, w.dtype), backend
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=backend)
    kernels = lumi.compile(loaded, "cuda").kernels
    assert kernels and all(isinstance(k.source, str) and k.source for k in kernels)
    assert_cuda_compiles([k.source for k in kernels if k.kind in ("elementwise", "reduce")], tmp_path)
    return loaded






















def test_gpt2_forward_and_next_token(tmp_path):
    def generate_step(ids, params):
        logits = gpt2(ids, **params, n_head=2)
        return logits, np.argmax(logits[-1])

    ids = np.array([5, 17, 3, 63, 0, 9, 9, 41], dtype=np.int64)
    graph = check(generate_step, ids, gpt2_params(), tmp_path=tmp_path)
    assert "params.blocks.1.attn.c_attn.w" in graph.inputs
    assert [n.op for n in graph.nodes].count("gather") == 1  # wte[ids]; wpe[range(n)] is a slice


def test_out_of_range_token_id_is_reported(tmp_path):
    params = gpt2_params()
    graph = lumi.trace(lambda ids, params: gpt2(ids, **params, n_head=2), np.zeros(4, np.int64), params)
    with pytest.raises(lumi.errors.IndexOutOfRange, match="index 64 is out of range for axis 0 of size 64"):
        graph.run(ids=np.array([1, 64, 2, 3]), **flatten("params", params), backend="numpy")
















def test_llama_block_with_a_concatenated_kv_cache(tmp_path):
    p, start = llama_params(), 5

    def step(x, cache_k, cache_v, p, out_proj):
        h, keys, values = llama_block(x, cache_k, cache_v, p, start)
        logits = rms_norm(h, p["ffn_norm"]) @ out_proj
        return logits[:, [-1], :], keys, values

    x, cache = randn(2, 3, 32, scale=1.0), randn(2, start, 2, 8, scale=1.0)
    check(step, x, cache, cache * 0.5, p, randn(32, 48), tmp_path=tmp_path)


def test_llama_block_with_a_preallocated_cache_updated_by_slice_assignment(tmp_path):
    p, start, T, max_seq = llama_params(), 4, 2, 8

    def step(x, cache_k, cache_v, p):
        B, T, D = x.shape
        h = rms_norm(x, p["attention_norm"])
        k = (h @ p["wk"]).reshape(B, T, 2, D // 4)
        cache_k[:, start : start + T] = apply_rotary(k, *rope_tables(D // 4, np.arange(start, start + T)))
        cache_v[:, start : start + T] = (h @ p["wv"]).reshape(B, T, 2, D // 4)
        keys, values = cache_k[:, : start + T], cache_v[:, : start + T]
        return x + llama_attention(h, keys, values, p, start, 4, 2), cache_k, cache_v

    x, cache = randn(2, T, 32, scale=1.0), randn(2, max_seq, 2, 8, scale=1.0)
    check(step, x, cache.copy(), cache.copy() * 0.5, p, tmp_path=tmp_path)


def test_causal_attention_of_new_queries_against_a_longer_cache(tmp_path):
    def reference(q, k, v):
        scores = q @ k.T / np.sqrt(q.shape[-1])
        offset = k.shape[0] - q.shape[0]
        scores = np.where(np.arange(k.shape[0]) <= np.arange(q.shape[0])[:, None] + offset, scores, -np.inf)
        return softmax(scores) @ v

    def both(q, k, v):
        return lumi.nn.attention(q, k, v, causal=True), reference(q, k, v)

    out, want = check(both, randn(2, 8), randn(5, 8), randn(5, 8), tmp_path=tmp_path)(randn(2, 8), *[randn(5, 8)] * 2)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_assigning_into_a_numpy_cache_says_how_to_write_it():
    def step(x):
        cache = np.zeros((2, 8, 4))
        cache[:, 0:3] = x * 2
        return cache

    with pytest.raises(lumi.TraceError, match=r"test_real_models.py:\d+.*np\.concatenate.*traced value"):
        lumi.trace(step, randn(2, 3, 4))


# -- a convolution layer through im2col (CS231n style index arrays) and np.pad ------------------------
def im2col_indices(x_shape, field_height, field_width, padding=1, stride=1):
    N, C, H, W = x_shape
    out_height = (H + 2 * padding - field_height) // stride + 1
    out_width = (W + 2 * padding - field_width) // stride + 1
    i0 = np.tile(np.repeat(np.arange(field_height), field_width), C)
    i1 = stride * np.repeat(np.arange(out_height), out_width)
    j0 = np.tile(np.arange(field_width), field_height * C)
    j1 = stride * np.tile(np.arange(out_width), out_height)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(C), field_height * field_width).reshape(-1, 1)
    return k, i, j, out_height, out_width


def conv_forward(x, w, b, stride=1, pad=1):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    k, i, j, oh, ow = im2col_indices(x.shape, HH, WW, pad, stride)
    cols = x_padded[:, k, i, j]  # (N, C*HH*WW, oh*ow)
    out = w.reshape(F, -1) @ cols + b.reshape(-1, 1)
    return out.reshape(N, F, oh, ow)


def test_cnn_with_im2col_and_pad(tmp_path):
    def cnn(images, params):
        h = np.maximum(conv_forward(images, **params["conv1"]), 0)
        h = np.maximum(conv_forward(h, **params["conv2"], stride=2), 0)
        pooled = h.mean(axis=(2, 3))
        return pooled @ params["fc"]["w"] + params["fc"]["b"]

    params = {"conv1": {"w": randn(4, 3, 3, 3), "b": randn(4)}, "conv2": {"w": randn(6, 4, 3, 3), "b": randn(6)},
              "fc": {"w": randn(6, 5), "b": randn(5)}}
    check(cnn, randn(2, 3, 8, 8, scale=1.0), params, tmp_path=tmp_path)


# -- k-means, softmax regression, an RNN -----------------------------------------------------------
def test_kmeans_assignment_and_update_step(tmp_path):
    def kmeans_step(X, centroids):
        distances = np.sum((X[:, None, :] - centroids[None, :, :]) ** 2, axis=-1)
        labels = np.argmin(distances, axis=1)
        onehot = (labels[:, None] == np.arange(centroids.shape[0])).astype(X.dtype)
        counts = onehot.sum(axis=0)
        means = (onehot.T @ X) / np.maximum(counts, 1)[:, None]
        new_centroids = np.where(counts[:, None] > 0, means, centroids)
        inertia = np.sum((X - centroids[labels]) ** 2)
        return labels, new_centroids, inertia, np.linalg.norm(new_centroids - centroids, axis=1)

    X = np.concatenate([randn(20, 2, scale=0.3) + c for c in ([0, 0], [3, 3], [0, 4])])
    check(kmeans_step, X, X[[0, 20, 40, 41]].copy(), tmp_path=tmp_path)


def test_softmax_regression_step_with_clip_and_take_along_axis(tmp_path):
    def train_step(X, y, W, b, lr=0.5):
        logits = X @ W + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p = np.clip(p, 1e-12, 1.0)
        loss = -np.mean(np.log(np.take_along_axis(p, y[:, None], axis=1)))
        onehot = np.zeros_like(p)
        onehot[np.arange(len(y)), y] = 1
        grad = (p - onehot) / len(y)
        accuracy = np.mean(np.argmax(logits, axis=1) == y)
        return loss, W - lr * X.T @ grad, b - lr * grad.sum(axis=0), accuracy

    X = randn(32, 5, scale=1.0)
    y = rng.integers(0, 3, size=32).astype(np.int64)
    check(train_step, X, y, randn(5, 3), np.zeros(3, np.float32), tmp_path=tmp_path)


def test_rnn_unrolled_over_a_python_loop(tmp_path):
    def rnn(xs, h0, p):
        B, T, _ = xs.shape
        h, hs = h0, []
        buffer = np.zeros_like(xs, shape=(B, T, h0.shape[1]))
        for t in range(T):
            h = np.tanh(xs[:, t, :] @ p["Wxh"] + h @ p["Whh"] + p["bh"])
            hs.append(h)
            buffer[:, t] = h
        H = np.stack(hs, axis=1)
        return H @ p["Why"] + p["by"], h, np.abs(buffer - H).max()

    p = {"Wxh": randn(4, 8), "Whh": randn(8, 8), "bh": randn(8), "Why": randn(8, 3), "by": randn(3)}
    check(rnn, randn(2, 5, 4, scale=1.0), np.zeros((2, 8), np.float32), p, tmp_path=tmp_path)


def test_an_unsupported_function_is_named():
    with pytest.raises(lumi.UnsupportedOperation, match=r"numpy\.linalg\.svd"):
        lumi.trace(lambda x: np.linalg.svd(x), randn(3, 3))
    with pytest.raises(lumi.UnsupportedOperation, match=r"traced boolean mask.*np\.where"):
        lumi.trace(lambda x: x[x > 0], randn(3, 3))
