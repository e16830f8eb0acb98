"""The differential fuzzer (issue 11): random programs over every primitive, their inputs in every
memory layout, each compiled target against the reference interpreter.

CI runs a fixed (derandomized) set of programs; ``./dev fuzz --minutes N`` sets ``LUMI_FUZZ_MINUTES``
and the same tests then draw fresh batches until their share of the time is spent, printing how many
programs ran and what failed. See docs/fuzzing.md.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections import Counter

import lumi
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import seed as with_seed
from hypothesis.strategies import SearchStrategy

from .conftest import NVCC, assert_cuda_compiles
from .oracle import assert_matches, bounds
from .programs import SKIP, Program, chains, programs, traced_programs

MINUTES = float(os.environ.get("LUMI_FUZZ_MINUTES") or 0)
SEED = int(os.environ.get("LUMI_FUZZ_SEED") or random.randrange(2**31))  # long mode's first batch
EXAMPLES = {"programs": {"numpy": 300, "cpu": 300, "cuda": 150}, "traced": {"numpy": 100, "cpu": 100, "cuda": 50},
            "chains": {"numpy": 3, "cpu": 3, "cuda": 3}}
SHARE = {"programs": 0.6, "traced": 0.3, "chains": 0.1}  # of the long mode's time, split evenly over the targets run
LONG_BATCH = 50
TARGETS = ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
STATS: Counter = Counter()


def _outputs(result) -> list[np.ndarray]:
    return list(result) if isinstance(result, tuple) else [result]


@contextlib.contextmanager
def user_recursion_limit():
    """Python's default recursion room (1000 frames) above the caller: Hypothesis raises the limit
    while it runs a test, which hid the renderer's RecursionError on 1000-op chains."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


def check(program: Program, target: str) -> None:
    """Run ``program`` on ``target`` with its laid-out inputs and compare every output with the
    reference interpreter on C-contiguous native copies, within the oracle's per-element bounds."""
    recursed = False
    try:
        with user_recursion_limit(), np.errstate(all="ignore"):  # NumPy's warnings are not the point here
            _check(program, target)
    except RecursionError:
        recursed = True
    if recursed:  # raised from one place with no context, so Hypothesis sees one bug however deep it was
        raise AssertionError(f"{target}: RecursionError on a graph of {len(program.graph.nodes)} nodes")


def _check(program: Program, target: str) -> None:
    g = program.graph
    before = [a.copy() for a in program.arrays]
    try:
        want = _outputs(g.run(*program.logical, backend="numpy"))
    except lumi.LumiError:  # the reference refuses (a max over no elements): so must the target
        if "refusals" in SKIP:
            return
        with pytest.raises(lumi.LumiError):
            lumi.compile(g, target)(*program.arrays)
        return
    expected = bounds(g, *g.bind_inputs(program.logical))
    got = _outputs(lumi.compile(g, target)(*program.arrays))
    for name, out, w, (value, bound) in zip(g.outputs, got, want, expected):
        np.testing.assert_array_equal(value, w, err_msg="the oracle disagrees with the reference interpreter")
        assert_matches(out, w, bound, f"{target} output {name}: ")
    for name, a, b in zip(g.inputs, program.arrays, before):
        np.testing.assert_array_equal(a, b, err_msg=f"{target} wrote into input {name}")


def run_batch(strategy: SearchStrategy, target: str, examples: int, seed: int | None = None,
              shrink: bool = True) -> None:
    """``examples`` programs through :func:`check`; derandomized unless a seed is given."""
    phases = [p for p in Phase if shrink or p not in (Phase.shrink, Phase.explain)]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None, phases=phases,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategy)
    def fuzz_case(program: Program) -> None:
        STATS[target, "run"] += 1
        note(repr(program))  # the listing: Hypothesis's own report of a composite value comes out empty
        try:
            check(program, target)
        except BaseException:
            STATS[target, "failed"] += 1
            raise

    (fuzz_case if seed is None else with_seed(seed)(fuzz_case))()


def fuzz(kind: str, strategy: SearchStrategy, target: str) -> None:
    """CI: one derandomized batch. Long mode: fresh batches until this test's share of the time is up."""
    shrink = kind != "chains"  # shrinking a 1000-op chain recompiles it hundreds of times
    if not MINUTES:
        run_batch(strategy, target, EXAMPLES[kind][target], shrink=shrink)
        return
    targets = 3 if lumi.compiler.best_target() == "cuda" else 2
    start = time.monotonic()
    deadline = start + MINUTES * 60 * SHARE[kind] / targets
    failures, batch, size = [], 0, LONG_BATCH if shrink else 2
    STATS.clear()
    while time.monotonic() < deadline:
        try:
            run_batch(strategy, target, size, seed=SEED + batch, shrink=shrink)
        except Exception as e:  # a shrunk failure (Hypothesis adds the program as a note)
            failures.append(f"LUMI_FUZZ_SEED={SEED + batch}: {type(e).__name__}: {e}\n"
                            + "\n".join(getattr(e, "__notes__", [])))
        batch += 1
    print(f"\nfuzz {kind} on {target}: {STATS[target, 'run']} programs run in {time.monotonic() - start:.0f} s "
          f"({batch} batches of {size}, seeds from LUMI_FUZZ_SEED={SEED}), "
          f"{STATS[target, 'failed']} runs failed (shrinking included), {len(failures)} batches found a failure")
    for f in failures:
        print(f"--- {f}")
    assert not failures, f"{len(failures)} fuzz batches failed on {target}; minimal programs printed above"


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_random_programs(target):
    fuzz("programs", programs(), target)


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_traced_programs(target):
    fuzz("traced", traced_programs(), target)


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_long_fused_chains(target):
    fuzz("chains", chains(), target)


def test_fuzz_cuda_sources_compile(tmp_path):
    """The CUDA source of fuzzer programs compiles with ``nvcc --ptx`` (generating it needs no GPU)."""
    if NVCC is None:
        pytest.skip("nvcc is not installed here")
    sources: dict[str, Program] = {}

    @settings(max_examples=400 if MINUTES else 100, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def collect(program: Program) -> None:
        for k in lumi.compile(program.graph, "cuda").kernels:
            if k.kind in ("elementwise", "reduce"):
                sources.setdefault(k.source, program)

    collect()
    try:
        assert_cuda_compiles(list(sources), tmp_path)
    except AssertionError:
        for src, program in sources.items():  # name the first program whose kernel nvcc rejects
            try:
                assert_cuda_compiles([src], tmp_path)
            except AssertionError as e:
                raise AssertionError(f"{program!r}\n{e}") from None
        raise
