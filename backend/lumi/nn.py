"""Neural-network composites, written in plain NumPy so they run eagerly on arrays and
record primitives when traced."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def gelu(x, approximate: str = "tanh"):
    """GELU; ``approximate="tanh"`` (GPT-2's) or ``"none"`` (the exact erf form)."""
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    if approximate == "none":
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    raise ValueError(f"approximate must be 'tanh' or 'none', got {approximate!r}")


def softmax(x, axis: int = -1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def layernorm(x, weight=None, bias=None, eps: float = 1e-5, axis: int = -1):
    mu = np.mean(x, axis=axis, keepdims=True)
    d = x - mu
    y = d / np.sqrt(np.mean(d * d, axis=axis, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def rmsnorm(x, weight=None, eps: float = 1e-6, axis: int = -1):
    y = x / np.sqrt(np.mean(x * x, axis=axis, keepdims=True) + eps)
    return y * weight if weight is not None else y


def linear(x, weight, bias=None):
    """``x @ weight + bias`` with ``weight`` of shape (in, out)."""
    y = x @ weight
    return y + bias if bias is not None else y


def attention(q, k, v, causal: bool = False):
    """Scaled dot-product attention over the last two axes."""
    scores = (q @ np.swapaxes(k, -1, -2)) * (1 / math.sqrt(q.shape[-1]))
    if causal:
        t, s = scores.shape[-2], scores.shape[-1]
        mask = np.tril(np.ones((t, s), dtype=bool), k=s - t)  # queries are the last t of s positions (a KV cache)
        scores = np.where(mask, scores, -np.inf)
    return softmax(scores, axis=-1) @ v
