"""docs/onnx.md's conformance table is generated: it must be what a green run of tests/onnx reports."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")

from lumi.onnx import conformance  # noqa: E402
from lumi.onnx.ops import OPS  # noqa: E402

PAGE = Path(__file__).parents[2] / "docs" / "onnx.md"


def test_the_committed_table_is_what_the_suite_checks():
    text = PAGE.read_text()
    assert conformance.node_table(conformance.expected_results()) in text, (
        "docs/onnx.md is stale: run python benchmarks/onnx_conformance.py --write docs/onnx.md")
    assert conformance.failure_list() in text
    tested = set(conformance.node_tests().values())
    assert all(f"| {op} |" in text for op in tested)
    assert tested <= set(OPS)
