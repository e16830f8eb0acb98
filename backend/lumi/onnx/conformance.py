"""ONNX's own backend tests on Lumi: which are in scope, which fail and why, and the table in docs/onnx.md.

A node test is in scope when the op it tests (its one node, or for an ``_expanded`` test the node of
the test it expands) is in :data:`lumi.onnx.ops.OPS`. ``tests/onnx`` runs those plus the light models of
:data:`LIGHT_IN_SUITE` through ``onnx.backend.test.BackendTest``; ``benchmarks/onnx_conformance.py`` runs
them and every shipped light model, and writes the table.
"""

from __future__ import annotations

import os
import re
import tempfile
import unittest
from functools import cache

from .ops import OPS

# Why the expected failures fail: pattern (searched in the test name) -> reason.
EXPECTED_FAILURES: dict[str, str] = {
    r"(?i)(u?int4|u?int2|float4e2m1|float8|e8m0|bfloat16|uint64|string)": (
        "element type Lumi does not carry (it has float16/32/64, int32/64 and bool; int8/16 and uint8/16/32 "
        "are widened at the boundary)"),
    r"training": "training mode (random dropout masks, batch statistics): Lumi imports models for inference",
    r"^test_maxpool_with_argmax": "MaxPool's Indices output is not supported",
    r"^test_reduce_(max|min|log_sum_exp)_empty_set(_bool)?$": (
        "a max or min over an empty axis: Lumi refuses it as NumPy does, ONNX answers -inf or +inf"),
    r"^test_identity_(sequence|opt)$": "sequence and optional types are not supported",
    r"^test_range_.*_expanded$": "the expanded form uses Loop, which is not supported",
}

LIGHT_IN_SUITE = ("densenet121", "shufflenet", "resnet50")
# Light models whose check does not measure the backend: their outcome depends on the BLAS build.
ILL_CONDITIONED = {
    "squeezenet": ("its dummy weights are all 0.02, so its 1,000 logits are equal in exact arithmetic (about 9.5e9); "
                   "a 1-ULP difference between channels' float32 sums, which depends on the BLAS's blocking, "
                   "decides the softmax (Lumi is within 5e-6 of onnxruntime at every layer; onnx's own "
                   "ReferenceEvaluator misses the expected output by 0.999)"),
}
LIGHT_ALL = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
             "squeezenet", "vgg19", "zfnet512")


@cache
def node_tests() -> dict[str, str]:
    """Every node test in scope -> the ONNX op it tests."""
    from onnx.backend.test.loader import load_model_tests

    cases = {c.name: c for c in load_model_tests(kind="node")}
    out = {}
    for name, case in sorted(cases.items()):
        op = cases.get(re.sub(r"_expanded.*$", "", name), case).model.graph.node[0].op_type
        if op in OPS:
            out[name] = op
    return out


def expected_failure(name: str) -> str | None:
    """The reason ``name`` is expected to fail, or None."""
    return next((why for pattern, why in EXPECTED_FAILURES.items() if re.search(pattern, name)), None)


def _names(light) -> list[str]:
    return [*node_tests(), *(f"test_{m}" for m in light)]


def backend_test(light=LIGHT_IN_SUITE, module: str | None = None):
    """ONNX's ``BackendTest`` on Lumi, limited to the node tests in scope and the ``light`` models, with the
    expected failures marked. Light models keep their dummy data under a temporary ``ONNX_HOME``."""
    import onnx.backend.test

    from .backend import LumiBackend

    os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "lumi-onnx-home"))
    t = onnx.backend.test.BackendTest(LumiBackend, module)
    t.include("^(" + "|".join(re.escape(n) for n in _names(light)) + ")_cpu$")
    for name in _names(light):
        if expected_failure(name):
            t.xfail(f"^{re.escape(name)}_cpu$")
    return t


def test_cases(light=LIGHT_IN_SUITE, module: str | None = None) -> dict:
    """:func:`backend_test`'s unittest classes holding only the tests in scope (on the CPU device)."""
    names = {f"{n}_cpu" for n in _names(light)}
    cases = backend_test(light, module).test_cases
    for case in cases.values():
        for attr in [a for a in vars(case) if a.startswith("test_") and a not in names]:
            delattr(case, attr)
    return cases


def expected_results() -> dict[str, str]:
    """What a green run of the node tests reports: test name -> ``pass`` or ``expected failure``."""
    return {name: "expected failure" if expected_failure(name) else "pass" for name in node_tests()}


def run(light=LIGHT_ALL) -> dict[str, str]:
    """Run the tests; test name -> ``pass``, ``expected failure``, ``FAIL`` or ``UNEXPECTED PASS``."""
    result = unittest.TestResult()
    cases = [case for c in test_cases(light).values() for case in unittest.defaultTestLoader.loadTestsFromTestCase(c)]
    out = {case._testMethodName.removesuffix("_cpu"): "pass" for case in cases}
    unittest.TestSuite(cases).run(result)
    for case, _ in result.failures + result.errors:
        out[case._testMethodName.removesuffix("_cpu")] = "FAIL"
    for case, _ in result.expectedFailures:
        out[case._testMethodName.removesuffix("_cpu")] = "expected failure"
    for case in result.unexpectedSuccesses:
        out[case._testMethodName.removesuffix("_cpu")] = "UNEXPECTED PASS"
    return out


def node_table(results: dict[str, str]) -> str:
    """Per op: node tests, passes, expected failures and failures (markdown)."""
    rows: dict[str, dict[str, int]] = {}
    for name, op in node_tests().items():
        row = rows.setdefault(op, {"pass": 0, "expected failure": 0})
        outcome = results.get(name, "not run")
        row[outcome] = row.get(outcome, 0) + 1
    lines = ["| op | node tests | pass | expected failures | other |", "| --- | ---: | ---: | ---: | ---: |"]
    sums = [0, 0, 0, 0]
    for op, row in sorted(rows.items()):
        total = sum(row.values())
        cells = [total, row["pass"], row["expected failure"], total - row["pass"] - row["expected failure"]]
        sums = [a + b for a, b in zip(sums, cells)]
        lines.append(f"| {op} | " + " | ".join(map(str, cells)) + " |")
    lines.append(f"| **all {len(rows)} ops** | " + " | ".join(f"**{c}**" for c in sums) + " |")
    return "\n".join(lines) + "\n"


def failure_list() -> str:
    """The expected failures grouped by reason (markdown)."""
    by_reason: dict[str, list[str]] = {}
    for name in node_tests():
        why = expected_failure(name)
        if why:
            by_reason.setdefault(why, []).append(name)
    return "".join(f"- {why} ({len(names)}): {', '.join(f'`{n}`' for n in names)}\n"
                   for why, names in by_reason.items())


def model_table(results: dict[str, str]) -> str:
    lines = ["| light model (`onnx/backend/test/data/light`) | on `cpu` |", "| --- | --- |"]
    lines += [f"| {m} | {results.get(f'test_{m}', 'not run')} |" for m in LIGHT_ALL]
    return "\n".join(lines) + "\n"


def ill_conditioned_notes() -> str:
    """Why the light models of :data:`ILL_CONDITIONED` are left out of the suite (markdown)."""
    return "".join(f"- {m}, not in the suite: {why}.\n" for m, why in ILL_CONDITIONED.items())
