"""ONNX in and out: ``from_onnx`` imports a model as a Lumi graph, ``to_onnx`` writes a graph as ONNX.

Importing this package does not import ``onnx``; each function does, when called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..graph.ir import Graph


def from_onnx(model, batch: str = "batch", constants: Mapping[str, np.ndarray] | None = None) -> Graph:
    """An ONNX model (path, bytes or ``onnx.ModelProto``) as a :class:`lumi.Graph`; see :mod:`lumi.onnx.importer`."""
    from .importer import from_onnx as _from_onnx

    return _from_onnx(model, batch, constants)


def to_onnx(graph: Graph, path: str | os.PathLike | None = None):
    """Write ``graph`` as an ONNX model to ``path`` (if given); returns the ``onnx.ModelProto``."""
    from .exporter import to_onnx as _to_onnx

    return _to_onnx(graph, path)


def read_graph(path: str | os.PathLike) -> Graph:
    """A model file as a graph: ``.onnx`` through :func:`from_onnx`, anything else as a ``.lumi`` file."""
    if os.fspath(path).lower().endswith(".onnx"):
        return from_onnx(path)
    from ..graph.fileformat import load

    return load(path)
