"""Helpers for the compiler tests: workload graphs and a batched CUDA check (``nvcc --ptx``, then
``ptxas -v`` on the PTX for spills and registers)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import lumi
import numpy as np
import pytest
from lumi import nn
from lumi.compiler.render_cuda import PRELUDE

NVCC = shutil.which("nvcc")
PTXAS = shutil.which("ptxas") or (NVCC and shutil.which("ptxas", path=os.path.dirname(NVCC)))
ARCH = "sm_90"

# The user properties of the compiler test now running (see _ptxas_properties): assert_cuda_compiles
# records the registers of the kernels it checked there, in the JUnit XML and the report of each test.
_properties: list | None = None


@pytest.fixture(autouse=True)
def _ptxas_properties(request):
    global _properties
    _properties = request.node.user_properties
    yield
    _properties = None


@dataclass(frozen=True)
class PtxasFunction:
    """One function of a ``ptxas -v`` report. ``registers`` is None for a device function that
    was not inlined (ptxas reports registers for entry functions only)."""

    name: str
    registers: int | None = None
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")


def parse_ptxas(report: str) -> dict[str, PtxasFunction]:
    """The functions of a ``ptxas -v`` report, by name. Each one is reported as::

        ptxas info    : Compiling entry function 'k' for 'sm_90'
        ptxas info    : Function properties for k
            0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 40 registers, used 1 barriers, 256 bytes smem
    """
    found: dict[str, dict] = {}
    entry = props = None
    for line in report.splitlines():
        if m := _ENTRY.search(line):
            entry = m[1]
            found.setdefault(entry, {})
        elif m := _PROPERTIES.search(line):
            props = m[1]
            found.setdefault(props, {})
        elif (m := _FRAME.search(line)) and props is not None:
            found[props].update(stack=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
            props = None
        elif (m := _USED.search(line)) and entry is not None:
            found[entry]["registers"] = int(m[1])
            entry = None
    return {name: PtxasFunction(name, **fields) for name, fields in found.items()}


def ptxas_report(ptx, tmp_path) -> dict[str, PtxasFunction]:
    """Assemble a PTX file with ``ptxas -v -arch=sm_90`` and parse what it reports."""
    r = subprocess.run([PTXAS, "-v", f"-arch={ARCH}", str(ptx), "-o", str(tmp_path / "kernels.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"ptxas rejected the PTX nvcc generated:\n{r.stderr[-4000:]}"
    return parse_ptxas(r.stdout + r.stderr)


def register_budget(threads: int, blocks: int = 1) -> int:
    """The registers a thread may use under ``__launch_bounds__(threads, blocks)`` on sm_90: 64K per SM,
    allocated 8 per thread at a time, at most 255."""
    return min(255, 65536 // (threads * blocks) // 8 * 8)


def register_spills(report: dict[str, PtxasFunction], budgets: dict[str, int] | None = None):
    """The functions that spill, split into (pressure spills, call spills).

    Without ``budgets`` every spill is a pressure spill. With each entry's register budget, a spill counts
    as pressure only where the entry uses (within one allocation unit) its whole budget. ptxas also
    spills a few bytes far below it around the subroutines it calls for 64-bit integer division (the
    kernels' ``long long`` index arithmetic) and float64 division: seen in float64 kernels at 32-40 of
    255 registers, and gone when those divisions are."""
    pressure, calls = [], []
    for f in report.values():
        if f.spill_stores or f.spill_loads:
            budget = None if budgets is None else budgets.get(f.name)
            low = budget is not None and f.registers is not None and f.registers < budget - 8
            (calls if low else pressure).append(f)
    return pressure, calls


def assert_no_spills(report: dict[str, PtxasFunction], budgets: dict[str, int] | None = None) -> None:
    """No function spills registers under pressure (see ``register_spills``; without budgets, none spills)."""
    spilled, _ = register_spills(report, budgets)
    assert not spilled, "generated CUDA spills registers (ptxas -v): " + "; ".join(
        f"{f.name}: {f.spill_stores} bytes spill stores, {f.spill_loads} bytes spill loads, {f.registers} registers"
        f"{'' if budgets is None or f.name not in budgets else f' of {budgets[f.name]}'}" for f in spilled)


def assert_cuda_compiles(sources, tmp_path) -> dict[str, int] | None:
    """Compile CUDA translation units with ``nvcc --ptx -arch=sm_90`` in one call, then assemble the
    PTX with ``ptxas -v -arch=sm_90`` (one call too): no kernel may spill registers under pressure
    (``register_spills``).

    Every generated unit is the shared prelude followed by one kernel, so the kernels are checked
    together: one prelude, each kernel renamed apart. Returns the registers each kernel uses, by its
    generated name (``name~k`` for the k-th of several kernels of one name), and records them as the
    test's ``ptxas_registers`` property (and the spills far below the budget, ``ptxas_call_spills``, in
    bytes stored); None where ptxas is not installed (nvcc's check still runs).
    """
    if NVCC is None:
        pytest.skip("nvcc is not installed here")
    bodies, names, budgets = [], {}, {}
    for k, src in enumerate(dict.fromkeys(sources)):
        assert src.startswith(PRELUDE), "generated CUDA must be the shared prelude plus one kernel"
        body = src[len(PRELUDE):]
        m = re.search(r"__launch_bounds__\((\d+)\) (\w+)\(", body)
        assert m, "generated CUDA must declare its kernel with __launch_bounds__"
        names[f"{m[2]}_{k}"] = m[2] if m[2] not in names.values() else f"{m[2]}~{k}"
        budgets[f"{m[2]}_{k}"] = register_budget(int(m[1]))
        bodies.append(body[:m.start()] + f"__launch_bounds__({m[1]}) {m[2]}_{k}(" + body[m.end():])
    if not bodies:
        return {}
    path, ptx = tmp_path / "kernels.cu", tmp_path / "kernels.ptx"
    path.write_text(PRELUDE + "\n".join(bodies))
    r = subprocess.run([NVCC, "--ptx", f"-arch={ARCH}", str(path), "-o", str(ptx)], capture_output=True, text=True)
    assert r.returncode == 0, f"nvcc rejected generated CUDA:\n{r.stderr[-4000:]}"
    assert ptx.read_text().count(".entry") == len(bodies)
    if PTXAS is None:
        return None
    report = ptxas_report(ptx, tmp_path)
    missing = [n for n in names if report.get(n) is None or report[n].registers is None]
    assert not missing, f"ptxas -v reported no registers for {missing}"
    assert_no_spills(report, budgets)
    registers = {names[n]: report[n].registers for n in names}
    if _properties is not None:
        _properties.append(("ptxas_registers", registers))
        calls = {names.get(f.name, f.name): f.spill_stores for f in register_spills(report, budgets)[1]}
        if calls:
            _properties.append(("ptxas_call_spills", calls))
    return registers


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
