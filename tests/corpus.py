"""Realistic NumPy programs, written the way public tutorials write them: the test corpus and the benchmarks'
workloads (``benchmarks/kernels.py`` imports this module)."""

from __future__ import annotations

import numpy as np

rng = np.random.default_rng(0)


def randn(*shape, scale=0.2):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# -- GPT-2, as "GPT in 60 lines of NumPy" writes it ---------------------------------------------
def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    exp_x = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return exp_x / np.sum(exp_x, axis=-1, keepdims=True)


def layer_norm(x, g, b, eps: float = 1e-5):
    mean = np.mean(x, axis=-1, keepdims=True)
    variance = np.var(x, axis=-1, keepdims=True)
    x = (x - mean) / np.sqrt(variance + eps)
    return g * x + b


def linear(x, w, b):
    return x @ w + b


def ffn(x, c_fc, c_proj):
    return linear(gelu(linear(x, **c_fc)), **c_proj)


def attention(q, k, v, mask):
    return softmax(q @ k.T / np.sqrt(q.shape[-1]) + mask) @ v


def mha(x, c_attn, c_proj, n_head):
    x = linear(x, **c_attn)
    qkv = np.split(x, 3, axis=-1)
    qkv_heads = list(map(lambda x: np.split(x, n_head, axis=-1), qkv))
    causal_mask = (1 - np.tri(x.shape[0], dtype=x.dtype)) * -1e10
    out_heads = [attention(q, k, v, causal_mask) for q, k, v in zip(*qkv_heads)]
    return linear(np.hstack(out_heads), **c_proj)


def transformer_block(x, mlp, attn, ln_1, ln_2, n_head):
    x = x + mha(layer_norm(x, **ln_1), **attn, n_head=n_head)
    return x + ffn(layer_norm(x, **ln_2), **mlp)


def gpt2(inputs, wte, wpe, blocks, ln_f, n_head):
    x = wte[inputs] + wpe[range(len(inputs))]
    for block in blocks:
        x = transformer_block(x, **block, n_head=n_head)
    return layer_norm(x, **ln_f) @ wte.T


def gpt2_params(vocab=64, ctx=16, d=32, layers=2):
    def dense(n_in, n_out):
        return {"w": randn(n_in, n_out), "b": randn(n_out)}

    def norm():
        return {"g": 1 + randn(d), "b": randn(d)}

    blocks = [{"mlp": {"c_fc": dense(d, 4 * d), "c_proj": dense(4 * d, d)},
               "attn": {"c_attn": dense(d, 3 * d), "c_proj": dense(d, d)},
               "ln_1": norm(), "ln_2": norm()} for _ in range(layers)]
    return {"wte": randn(vocab, d), "wpe": randn(ctx, d), "blocks": blocks, "ln_f": norm()}


# -- a Llama-style block: RMSNorm, rotary embeddings, grouped-query attention, a KV cache -------------
def rms_norm(x, weight, eps: float = 1e-5):
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x * (1 / (1 + np.exp(-x)))


def rope_tables(head_dim, positions, theta: float = 10000.0):
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
    freqs = np.outer(positions, inv_freq)
    return np.cos(freqs), np.sin(freqs)


def apply_rotary(x, cos, sin):
    x_even, x_odd = np.split(x.reshape(*x.shape[:-1], -1, 2), 2, axis=-1)
    x_even, x_odd = np.squeeze(x_even, -1), np.squeeze(x_odd, -1)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    out = np.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
    return out.reshape(x.shape)


def llama_attention(x, keys, values, p, start_pos, n_heads, n_kv_heads):
    """x: (B, T, D); keys/values: the cached (B, S, n_kv_heads, head_dim) including this step."""
    B, T, D = x.shape
    head_dim = D // n_heads
    q = (x @ p["wq"]).reshape(B, T, n_heads, head_dim)
    cos, sin = rope_tables(head_dim, np.arange(start_pos, start_pos + T))
    q = apply_rotary(q, cos, sin)
    n_rep = n_heads // n_kv_heads
    keys, values = np.repeat(keys, n_rep, axis=2), np.repeat(values, n_rep, axis=2)
    q, keys, values = (t.transpose(0, 2, 1, 3) for t in (q, keys, values))
    S = keys.shape[2]
    mask = np.triu(np.full((T, S), -np.inf), k=S - T + 1)
    scores = q @ keys.transpose(0, 1, 3, 2) / np.sqrt(head_dim) + mask
    out = softmax(scores) @ values
    return out.transpose(0, 2, 1, 3).reshape(B, T, D) @ p["wo"]


def llama_block(x, cache_k, cache_v, p, start_pos, n_heads=4, n_kv_heads=2):
    B, T, D = x.shape
    head_dim = D // n_heads
    h = rms_norm(x, p["attention_norm"])
    k = (h @ p["wk"]).reshape(B, T, n_kv_heads, head_dim)
    v = (h @ p["wv"]).reshape(B, T, n_kv_heads, head_dim)
    cos, sin = rope_tables(head_dim, np.arange(start_pos, start_pos + T))
    k = apply_rotary(k, cos, sin)
    keys = np.concatenate([cache_k, k], axis=1)
    values = np.concatenate([cache_v, v], axis=1)
    h = x + llama_attention(h, keys, values, p, start_pos, n_heads, n_kv_heads)
    g = rms_norm(h, p["ffn_norm"])
    out = h + (silu(g @ p["w1"]) * (g @ p["w3"])) @ p["w2"]
    return out, keys, values


def llama_params(d=32, n_kv_heads=2, n_heads=4, hidden=64):
    kv = d // n_heads * n_kv_heads
    return {"attention_norm": 1 + randn(d), "ffn_norm": 1 + randn(d), "wq": randn(d, d), "wk": randn(d, kv),
            "wv": randn(d, kv), "wo": randn(d, d), "w1": randn(d, hidden), "w2": randn(hidden, d),
            "w3": randn(d, hidden)}


# -- synthetic: graphs of any size ----------------------------------------------------------------
def chain(n_ops: int):
    """A function of ``n_ops`` alternating elementwise steps (about 2.5 graph nodes each)."""

    def f(x):
        for i in range(n_ops):
            x = np.tanh(x) * 1.0001 + 0.5 if i % 2 else x * 0.999 + 0.1
        return x

    return f
