"""ONNX's own backend tests (``onnx.backend.test.BackendTest``) on Lumi's ``cpu`` target: every node test of
the ops Lumi imports, and a few of the light models shipped in the onnx wheel (the rest, and the table in
docs/onnx.md, come from ``benchmarks/onnx_conformance.py``)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("onnx")

from lumi.onnx import conformance  # noqa: E402

with warnings.catch_warnings():  # onnx's case generators overflow casts on purpose
    warnings.simplefilter("ignore", RuntimeWarning)
    globals().update(conformance.test_cases(module=__name__))
