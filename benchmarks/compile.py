"""Compile time against graph size: tracing, passes, fusion, rendering and building, for 1k to 64k nodes.

    python benchmarks/compile.py              # 1k, 8k and 64k nodes, both graph families
    python benchmarks/compile.py --sizes 1000 10000

Two families: an elementwise chain (one long fused run, split into kernels of at most
``MAX_GROUP_NODES`` statements) and a stack of residual MLP blocks (layernorm, matmuls, GELU: many
small kernels and library steps). Each graph is checked against the reference interpreter before its
times count. Kernels are built in a fresh cache, so the C compiler's time is included. The figure that
matters is the growth exponent between sizes: 1.0 is linear, 2.0 quadratic.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time

import lumi
import numpy as np
from _machine import cpu_model

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from corpus import chain  # noqa: E402
from lumi import nn
from lumi.compiler.groups import MAX_GROUP_NODES, attach_epilogues, fuse
from lumi.compiler.passes import optimize
from lumi.compiler.plan import _render

WIDTH = 16


def mlp_stack(n_blocks: int):
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) * 0.1,
           rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) * 0.1) for _ in range(n_blocks)]

    def f(x):
        for w1, w2 in ws:
            x = x + nn.gelu(nn.layernorm(x) @ w1) @ w2
        return x

    return f


FAMILIES = {"chain": (chain, 2.5), "mlp_stack": (mlp_stack, 24.0)}  # builder, graph nodes per unit


def measure(family: str, nodes: int) -> dict:
    os.environ["LUMI_HOME"] = tempfile.mkdtemp(prefix="lumi-bench-compile-")  # a cold kernel cache each time
    build, per_unit = FAMILIES[family]
    fn = build(max(1, round(nodes / per_unit)))
    t0 = time.perf_counter()
    g = lumi.trace(fn, lumi.spec(("batch", WIDTH)))
    t1 = time.perf_counter()
    opt = optimize(g)
    t2 = time.perf_counter()
    steps = attach_epilogues(opt, fuse(opt))
    t3 = time.perf_counter()
    for st in steps:
        _render(st, opt, "cpu")
    t4 = time.perf_counter()
    plan = lumi.compile(g, "cpu")  # repeats the front end (measured above), then builds on first call
    x = np.random.default_rng(1).standard_normal((4, WIDTH)).astype(np.float32)
    t5 = time.perf_counter()
    got = plan(x)
    t6 = time.perf_counter()
    np.testing.assert_allclose(got, g.run(x, backend="numpy"), rtol=1e-4, atol=1e-4)
    return {"family": family, "nodes": len(g.nodes), "kernels": len(plan.kernels), "trace": t1 - t0,
            "passes": t2 - t1, "fusion": t3 - t2, "render": t4 - t3, "build+run": t6 - t5,
            "compile": (t4 - t1) + (t6 - t5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000, 64000])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = ap.parse_args()
    print(f"# {cpu_model()}; Python {platform.python_version()}; kernels of at most {MAX_GROUP_NODES} statements")
    cols = ("nodes", "kernels", "trace", "passes", "fusion", "render", "build+run", "compile")
    print(f"{'family':10}" + "".join(f"{c:>11}" for c in cols) + f"{'growth':>9}")
    for family in args.families:
        prev = None
        for size in args.sizes:
            r = measure(family, size)
            growth = "" if prev is None else \
                f"{math.log(r['compile'] / prev['compile']) / math.log(r['nodes'] / prev['nodes']):.2f}"
            print(f"{family:10}{r['nodes']:>11}{r['kernels']:>11}" +
                  "".join(f"{r[c]:>10.2f}s" for c in cols[2:]) + f"{growth:>9}")
            sys.stdout.flush()
            prev = r
    print("compile = passes + fusion + render + building the kernels and the first call; "
          "growth = d log(compile) / d log(nodes) from the row above (1.0 is linear)")


if __name__ == "__main__":
    main()
