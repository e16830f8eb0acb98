"""Lumi: serverless GPU compute from a notebook.

Trace NumPy code into a graph, run it locally or on a Ray cluster of GPU workers, and deploy
it as a versioned HTTP endpoint.
"""

from . import nn
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

__version__ = "0.1.0"

__all__ = [
    "Busy",
    "ExecutionError",
    "FormatError",
    "Graph",
    "LumiError",
    "ShapeError",
    "Tensor",
    "TraceError",
    "UnsupportedOperation",
    "load",
    "nn",
    "spec",
    "trace",
]
