"""``ptxas -v`` on generated CUDA: the report's parser, the spill check and the registers per kernel
(recorded as each test's ``ptxas_registers`` property: ``pytest --junitxml`` writes them out)."""

from __future__ import annotations

import subprocess

import lumi
import numpy as np
import pytest
from corpus import gpt2_params, transformer_block
from lumi import nn

from .conftest import (
    NVCC,
    PTXAS,
    assert_cuda_compiles,
    assert_no_spills,
    ptxas_report,
    register_budget,
    register_spills,
)

pytestmark = pytest.mark.skipif(NVCC is None or PTXAS is None, reason="nvcc or ptxas is not installed here")


def gpt2_block_kernels():
    """The generated kernels (matmuls aside) of one GPT-2 block and of a wide float16 softmax."""
    block = gpt2_params(d=32, layers=1)["blocks"][0]
    x = np.random.default_rng(0).standard_normal((8, 32)).astype(np.float32)
    graphs = [lumi.trace(lambda x, block: transformer_block(x, **block, n_head=2), x, block),
              lumi.trace(nn.softmax, np.zeros((4, 4096), np.float16))]
    return [k for g in graphs for k in lumi.compile(g, "cuda").kernels if k.kind in ("elementwise", "reduce")]


def test_registers_of_a_gpt2_block_and_softmax(tmp_path, request):
    kernels = gpt2_block_kernels()
    registers = assert_cuda_compiles([k.source for k in kernels], tmp_path)
    # One entry per distinct kernel, named as generated; every kernel fits its 256-thread launch bound.
    distinct = {k.source: k.name for k in kernels}
    assert sorted(n.split("~")[0] for n in registers) == sorted(distinct.values())
    assert all(0 < r <= 255 for r in registers.values()), registers
    assert any(n.startswith("reduce_") for n in registers)
    assert ("ptxas_registers", registers) in request.node.user_properties


def test_parser_reads_every_entry_of_real_ptxas_output(tmp_path):
    kernels = gpt2_block_kernels()
    assert_cuda_compiles([kernels[0].source], tmp_path)  # leaves kernels.ptx: one entry, renamed <name>_0
    report = ptxas_report(tmp_path / "kernels.ptx", tmp_path)
    (entry,) = report.values()
    assert entry.name == f"{kernels[0].name}_0"
    assert entry.registers and entry.stack == entry.spill_stores == entry.spill_loads == 0
    assert_no_spills(report)


def test_spills_far_below_the_budget_are_recorded_not_refused(tmp_path, request):
    """ptxas spills a few bytes of a float64 exp kernel far below its 255 registers (around the 64-bit
    division subroutine its grid-stride loop calls): recorded, not refused."""
    graph = lumi.trace(np.exp, np.zeros((3, 10)))
    (kernel,) = lumi.compile(graph, "cuda").kernels
    assert_cuda_compiles([kernel.source], tmp_path)
    (entry,) = ptxas_report(tmp_path / "kernels.ptx", tmp_path).values()
    pressure, calls = register_spills({entry.name: entry}, {entry.name: register_budget(256)})
    assert not pressure
    if calls:
        assert ("ptxas_call_spills", {kernel.name: entry.spill_stores}) in request.node.user_properties
        with pytest.raises(AssertionError, match="spill stores"):
            assert_no_spills({entry.name: entry})  # without budgets every spill is refused


def test_a_kernel_that_spills_is_refused(tmp_path):
    """64 values live at once under a 32-register cap (1024 threads, 2 blocks per SM) spill for real."""
    cu, ptx = tmp_path / "spills.cu", tmp_path / "spills.ptx"
    cu.write_text("""
extern "C" __global__ void __launch_bounds__(1024, 2) spills(const float *p, float *q) {
  float v[64];
#pragma unroll
  for (int i = 0; i < 64; i++) v[i] = p[i * 1024 + threadIdx.x];
#pragma unroll
  for (int i = 0; i < 64; i++) q[i * 1024 + threadIdx.x] = v[(i * 37) % 64] * v[i];
}
""")
    subprocess.run([NVCC, "--ptx", "-arch=sm_90", str(cu), "-o", str(ptx)], check=True, capture_output=True)
    report = ptxas_report(ptx, tmp_path)
    assert report["spills"].registers <= 32
    assert report["spills"].spill_stores > 0 and report["spills"].spill_loads > 0
    assert register_budget(1024, 2) == 32
    for budgets in (None, {"spills": 32}):
        with pytest.raises(AssertionError, match=r"spills: \d+ bytes spill stores, \d+ bytes spill loads"):
            assert_no_spills(report, budgets)
