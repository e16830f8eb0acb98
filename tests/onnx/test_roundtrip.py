"""Graphs written with NumPy (a small CNN on lumi.conv, a transformer block) go out through lumi.to_onnx,
come back through lumi.from_onnx, and agree with onnxruntime and with NumPy itself."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from lumi import conv, nn

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(0)


def randn(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


CNN = {"w1": randn(8, 3, 3, 3, scale=0.3), "b1": randn(8), "w2": randn(8, 1, 3, 3, scale=0.3),
       "w3": randn(16, 8, 1, 1, scale=0.3), "b3": randn(16), "fc": randn(16, 10, scale=0.3), "fcb": randn(10)}


def cnn(x):
    h = nn.relu(conv.conv(x, CNN["w1"], CNN["b1"], pads=[1, 1, 1, 1]))
    h = conv.max_pool(h, [2, 2], strides=[2, 2])
    h = nn.relu(conv.conv(h, CNN["w2"], strides=[2, 2], pads=[1, 1, 1, 1], groups=8))  # depthwise
    h = conv.avg_pool(nn.relu(conv.conv(h, CNN["w3"], CNN["b3"])), [2, 2], pads=[0, 0, 1, 1])
    h = conv.global_avg_pool(h).reshape(h.shape[0], 16)
    return nn.softmax(h @ CNN["fc"] + CNN["fcb"])


D = 32
BLOCK = {"wq": randn(D, D, scale=0.2), "wk": randn(D, D, scale=0.2), "wv": randn(D, D, scale=0.2),
         "wo": randn(D, D, scale=0.2), "w1": randn(D, 4 * D, scale=0.1), "w2": randn(4 * D, D, scale=0.1),
         "g1": randn(D), "g2": randn(D)}


def block(x):
    h = nn.layernorm(x, BLOCK["g1"])
    a = nn.attention(h @ BLOCK["wq"], h @ BLOCK["wk"], h @ BLOCK["wv"], causal=True)
    x = x + a @ BLOCK["wo"]
    return x + nn.gelu(nn.layernorm(x, BLOCK["g2"]) @ BLOCK["w1"]) @ BLOCK["w2"]


def roundtrip(fn, example, spec, tmp_path):
    graph = lumi.trace(fn, spec)
    path = tmp_path / "model.onnx"
    lumi.to_onnx(graph, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = fn(example)
    (ort_out,) = sess.run(None, {"x": example})
    back = lumi.from_onnx(path)
    assert back.input_specs() == graph.input_specs()
    np.testing.assert_allclose(ort_out, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(back.run(example, backend="cpu"), want, rtol=1e-4, atol=1e-5)
    return back


def test_cnn_roundtrip_keeps_the_batch_symbolic(tmp_path):
    x = randn(3, 3, 16, 16)
    back = roundtrip(cnn, x, lumi.spec(("batch", 3, 16, 16)), tmp_path)
    np.testing.assert_allclose(back.run(x[:1], backend="cpu"), cnn(x[:1]), rtol=1e-4, atol=1e-5)


def test_transformer_block_roundtrip(tmp_path):
    roundtrip(block, randn(16, D), lumi.spec((16, D)), tmp_path)
