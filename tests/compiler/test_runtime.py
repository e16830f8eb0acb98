"""Workers run graphs through compiled plans, compiled once per (graph hash, device)."""

from __future__ import annotations

import lumi
import numpy as np
import pytest
from lumi import nn
from lumi.runtime import execute


def test_execute_compiles_once_and_reuses_the_plan():
    x = np.linspace(-1, 1, 40, dtype=np.float32).reshape(5, 8)
    g = lumi.trace(nn.softmax, x)
    assert execute.default_target() == "cpu"
    out = execute.execute(g, [x])
    np.testing.assert_allclose(out[0], g.run(x, backend="numpy"), rtol=1e-6)
    plan = execute.plan_for(g)
    assert plan.target == "cpu" and plan is execute.plan_for(lumi.trace(nn.softmax, x))  # same hash, same plan
    execute.execute(g, [x * 2])
    assert execute.plan_for(g) is plan


@pytest.mark.slow
def test_worker_actor_runs_the_compiled_plan(ray_cluster):
    from lumi.runtime.worker import Worker

    w = Worker.remote()
    try:
        assert ray_cluster.get(w.info.remote())["target"] == "cpu"
        x = np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)
        g = lumi.trace(lambda x: nn.gelu(x) + x.sum(0), x)
        big = np.ones((256, 128), np.float32)  # 128 KiB of output: past INLINE_BYTES, it comes as its own object
        g_big = lumi.trace(lambda b: b * 2, big)
        jobs = [("a" * 8, "graph", g, [x], "local"), ("b" * 8, "graph", g_big, [big], "acme")]
        readings, small, large = ray_cluster.get(list(w.run_jobs.options(num_returns=3).remote(jobs)))
        assert [r["target"] for r in readings] == ["cpu", "cpu"] and [r["error"] for r in readings] == [None, None]
        np.testing.assert_allclose(readings[0]["value"][0], g.run(x, backend="numpy"), rtol=1e-5)
        assert small is None and "value" not in readings[1]  # a small result travels once, in its reading
        np.testing.assert_array_equal(large[0], big * 2)
    finally:
        ray_cluster.kill(w)


def _build_and_load(args: tuple[str, str, str]) -> bool:
    home, source, name = args
    import os

    os.environ["LUMI_HOME"] = home
    from lumi.compiler.targets import cc

    return cc.load(cc.build([source])[0], name) is not None


def test_workers_building_the_same_kernel_at_once_all_get_it(tmp_path):
    # Several workers on one machine compile the same new kernel together: none may read a source
    # file another is still writing, or load a library without the kernel in it.
    from concurrent.futures import ProcessPoolExecutor

    from lumi.compiler.render_c import PRELUDE

    body = "\n".join(f"double f{i}(double x) {{ return sin(x * {i}.0) + {i}; }}" for i in range(400))
    source = PRELUDE + body + "\nvoid k(char **bufs, const int64_t *syms) { (void)bufs; (void)syms; }\n"
    with ProcessPoolExecutor(4) as pool:
        assert all(pool.map(_build_and_load, [(str(tmp_path), source, "k")] * 8))
    assert [p.suffix for p in sorted((tmp_path / "kernels").iterdir())] == [".c", ".so"]
