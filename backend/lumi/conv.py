"""Convolution, pooling and normalisation composites for images, in plain NumPy: they run eagerly on
arrays and record primitives when traced (like :mod:`lumi.nn`).

Inputs are channels-first, ``(N, C, *spatial)`` with any number of spatial axes. Padding follows
ONNX's layout: ``pads = [begin_0, begin_1, ..., end_0, end_1, ...]``. Every sliding window is one
gather of the input (an im2col with a constant index; positions in the padding are masked with
``np.where``, so the padded input is never built), and a convolution is then one matmul whose
bias and activation epilogue the compiler fuses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _spatial_args(rank: int, kernel, strides, dilations, pads):
    strides = tuple(strides or (1,) * rank)
    dilations = tuple(dilations or (1,) * rank)
    pads = tuple(pads or (0,) * (2 * rank))
    return tuple(kernel), strides, dilations, pads[:rank], pads[rank:]


def output_size(n: int, k: int, stride: int, dilation: int, lo: int, hi: int, ceil: bool = False) -> int:
    """Windows along one axis; with ``ceil`` a last partial window counts unless it starts in the end padding."""
    span = n + lo + hi - dilation * (k - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    return out - 1 if ceil and (out - 1) * stride >= n + lo else out


def windows(spatial: Sequence[int], kernel, strides=None, dilations=None, pads=None, ceil: bool = False,
            out: Sequence[int] | None = None):
    """``(index, valid, out)``: for every kernel offset and output position, its flat index into the spatial
    axes (``index[k, o]``, 0 where outside), whether it lies inside the input, and the output's spatial shape
    (``out`` if given)."""
    r = len(spatial)
    kernel, strides, dilations, lo, hi = _spatial_args(r, kernel, strides, dilations, pads)
    if out is None:
        out = tuple(output_size(*args, ceil) for args in zip(spatial, kernel, strides, dilations, lo, hi))
    out = tuple(out)
    flat, valid = np.zeros((1,) * 2 * r, np.int64), np.ones((1,) * 2 * r, bool)
    for a in range(r):
        pos = (np.arange(out[a]) * strides[a] - lo[a])[None, :] + (np.arange(kernel[a]) * dilations[a])[:, None]
        shape = [1] * 2 * r
        shape[a], shape[r + a] = kernel[a], out[a]
        pos = pos.reshape(shape)
        valid = valid & (pos >= 0) & (pos < spatial[a])
        flat = flat * spatial[a] + pos
    full = kernel + out
    flat = np.broadcast_to(np.where(valid, flat, 0), full).reshape(math.prod(kernel), math.prod(out))
    return flat, np.broadcast_to(valid, full).reshape(flat.shape), out


def patches(x, kernel, strides=None, dilations=None, pads=None, fill=0.0, ceil: bool = False):
    """Every window of ``x``: ``(N, C, K, *out)`` with ``K = prod(kernel)``, padding read as ``fill``."""
    n, c, *spatial = x.shape
    index, valid, out = windows(spatial, kernel, strides, dilations, pads, ceil)
    k = index.shape[0]
    if k == 1 and valid.all() and index[0].tolist() == list(range(math.prod(spatial))):
        return x.reshape(n, c, 1, *out)  # a 1x1 window at stride 1: the input itself
    taken = np.take(x.reshape(n, c, math.prod(spatial)), index.reshape(-1), axis=2)
    if not valid.all():  # masked in the gather's own shape, so that both are one kernel
        taken = np.where(valid.reshape(-1), taken, np.asarray(fill, dtype=x.dtype))
    return taken.reshape(n, c, k, *out)


def conv(x, w, b=None, strides=None, pads=None, dilations=None, groups: int = 1, activation=None):
    """N-d convolution (cross-correlation, as in ONNX and PyTorch): ``x (N, C, *S)``, ``w (O, C/groups, *K)``,
    optional bias ``b (O,)`` and elementwise ``activation`` (applied to the product before it is reshaped, so
    that both fuse into the matmul's epilogue). Depthwise convolutions (one input channel per group) multiply
    and sum; others are one matmul over the windows (batched over groups)."""
    act = activation or (lambda y: y)
    n, c = x.shape[:2]
    o, cg, *kernel = w.shape
    cols = patches(x, kernel, strides, dilations, pads)
    k, out = cols.shape[2], cols.shape[3:]
    p = math.prod(out)
    if groups == 1:
        w2 = w.reshape(o, cg * k)

        def product(c2):  # the bias added to the (o, pixels) product itself: the compiler fuses it as an epilogue
            y = w2 @ c2
            return act(y if b is None else y + b.reshape(o, 1))

        if n == 1:
            return product(cols.reshape(c * k, p)).reshape(1, o, *out)
        if isinstance(n, int):  # one 2-D product per image (no copies of the weights), joined
            cols = cols.reshape(n, c * k, p)
            return np.stack([product(cols[i]) for i in range(n)]).reshape(n, o, *out)
        return product(cols.reshape(n, c * k, p)).reshape(n, o, *out)  # a symbolic batch: batched over images
    if cg == 1:  # depthwise: output channel g*m + j reads input channel g
        m = o // groups
        y = np.sum(cols.reshape(n, c, 1, k, p) * w.reshape(c, m, k, 1), axis=3).reshape(n, o, *out)
    else:
        y = np.matmul(w.reshape(groups, o // groups, cg * k),
                      cols.reshape(n, groups, cg * k, p)).reshape(n, o, *out)
    return act(y if b is None else y + b.reshape(o, *(1,) * len(out)))


def max_pool(x, kernel, strides=None, pads=None, dilations=None, ceil: bool = False):
    """Max over every window; padding never wins."""
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    return np.max(patches(x, kernel, strides, dilations, pads, low, ceil), axis=2)


def avg_pool(x, kernel, strides=None, pads=None, dilations=None, ceil: bool = False,
             count_include_pad: bool = False):
    """Mean over every window: of the positions inside the input, or (``count_include_pad``) inside the padded
    input; positions past the end padding (a ``ceil`` window) are never counted."""
    spatial = x.shape[2:]
    total = np.sum(patches(x, kernel, strides, dilations, pads, 0.0, ceil), axis=2)
    _, valid, out = windows(spatial, kernel, strides, dilations, pads, ceil)
    if count_include_pad and pads:  # the same windows over the padded input, whose begin padding is now index 0
        r = len(spatial)
        grown = [d + lo + hi for d, lo, hi in zip(spatial, pads[:r], pads[r:])]
        _, valid, _ = windows(grown, kernel, strides, dilations, None, ceil, out)
    count = valid.sum(axis=0).reshape(out).astype(x.dtype)
    return total / count


def global_avg_pool(x):
    return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


def global_max_pool(x):
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


def batchnorm_affine(scale, bias, mean, var, eps: float = 1e-5):
    """Inference batch normalisation as ``(a, b)`` with ``y = x * a + b`` per channel."""
    a = scale / np.sqrt(var + eps)
    return a, bias - mean * a


def batchnorm(x, scale, bias, mean, var, eps: float = 1e-5):
    """Inference batch normalisation over axis 1."""
    a, b = batchnorm_affine(scale, bias, mean, var, eps)
    shape = (-1,) + (1,) * (x.ndim - 2)
    return x * a.reshape(shape) + b.reshape(shape)


def lrn(x, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0):
    """Local response normalisation across channels (AlexNet's): ``x / (bias + alpha/size * sum x^2) ** beta``
    over the ``size`` channels around each one."""
    c = x.shape[1]
    sq = x * x
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(sq, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    window = padded[:, 0:c]
    for i in range(1, size):
        window = window + padded[:, i:i + c]
    return x / (bias + (alpha / size) * window) ** beta
