"""Helpers for the compiler tests: workload graphs and a batched ``nvcc --ptx`` check."""

from __future__ import annotations

import re
import shutil
import subprocess

import lumi
import numpy as np
import pytest
from lumi import nn
from lumi.compiler.render_cuda import PRELUDE

NVCC = shutil.which("nvcc")


def assert_cuda_compiles(sources, tmp_path) -> None:
    """Compile CUDA translation units with ``nvcc --ptx -arch=sm_90`` in one call.

    Every generated unit is the shared prelude followed by one kernel, so the kernels are checked
    together: one prelude, each kernel renamed apart.
    """
    if NVCC is None:
        pytest.skip("nvcc is not installed here")
    bodies = []
    for k, src in enumerate(dict.fromkeys(sources)):
        assert src.startswith(PRELUDE), "generated CUDA must be the shared prelude plus one kernel"
        body = src[len(PRELUDE):]
        bodies.append(re.sub(r"__launch_bounds__\((\d+)\) (\w+)\(", rf"__launch_bounds__(\1) \2_{k}(", body, count=1))
    if not bodies:
        return
    path = tmp_path / "kernels.cu"
    path.write_text(PRELUDE + "\n".join(bodies))
    r = subprocess.run([NVCC, "--ptx", "-arch=sm_90", str(path), "-o", str(tmp_path / "kernels.ptx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"nvcc rejected generated CUDA:\n{r.stderr[-4000:]}"
    ptx = (tmp_path / "kernels.ptx").read_text()
    assert ptx.count(".entry") == len(bodies)


def mlp_block(x, w1, b1, w2, b2, gamma, beta):
    """layernorm -> D->4D + bias + GELU -> 4D->D + bias + residual."""
    h = nn.layernorm(x, gamma, beta)
    return x + (nn.gelu(h @ w1 + b1) @ w2 + b2)


def mlp_args(tokens=16, d=8, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return (f(tokens, d), f(d, 4 * d) * 0.2, f(4 * d), f(4 * d, d) * 0.2, f(d), f(d), f(d))


def bias_gelu_graph(n=32, d=48, dtype=np.float32):
    x, b = np.zeros((n, d), dtype), np.zeros(d, dtype)
    return lumi.trace(lambda x, b: nn.gelu(x + b), x, b)
