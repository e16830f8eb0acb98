"""The serving tests' gateway fixtures, reused (not copied) for deploying ONNX models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("lumi_serving_fixtures", Path(__file__).parent.parent / "serving" /
                                               "conftest.py")
_serving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_serving)
gateway, client = _serving.gateway, _serving.client
