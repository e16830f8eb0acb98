"""Lumi: serverless GPU compute from a notebook.

Trace NumPy code into a graph, run it locally or on a Ray cluster of GPU workers, and deploy
it as a versioned HTTP endpoint.
"""

from . import nn
from .compiler import Plan, compile
from .errors import (
    Busy,
    ExecutionError,
    FormatError,
    LumiError,
    ShapeError,
    TraceError,
    UnsupportedOperation,
)
from .graph.fileformat import load
from .graph.ir import Graph
from .graph.tensor import Tensor
from .graph.trace import spec, trace
from .version import __version__


def __getattr__(name: str):
    # The cluster and HTTP APIs load Ray and httpx, so they are imported on first use, not with ``import lumi``.
    if name in ("submit", "Job"):
        from .runtime import jobs

        return getattr(jobs, name)
    if name in ("map", "starmap"):  # not in __all__: ``from lumi import *`` keeps the builtin map
        from .runtime import fanout

        return getattr(fanout, name)
    if name in ("schedule", "schedules", "Schedule"):
        from . import cron

        return getattr(cron, name)
    if name in ("Dict", "Queue", "Volume"):  # the store loads Ray and fsspec
        from . import storage

        return getattr(storage, name)
    if name == "Endpoint":
        from .serving.endpoint import Endpoint

        return Endpoint
    if name in ("from_onnx", "to_onnx"):  # lumi.onnx imports the onnx package only when called
        from . import onnx

        return getattr(onnx, name)
    raise AttributeError(f"module 'lumi' has no attribute {name!r}")


__all__ = [
    "Busy",
    "Dict",
    "Endpoint",
    "ExecutionError",
    "FormatError",
    "Graph",
    "Job",
    "LumiError",
    "Plan",
    "Queue",
    "Schedule",
    "ShapeError",
    "Tensor",
    "TraceError",
    "UnsupportedOperation",
    "Volume",
    "__version__",
    "compile",
    "from_onnx",
    "load",
    "nn",
    "schedule",
    "schedules",
    "spec",
    "submit",
    "to_onnx",
    "trace",
]
