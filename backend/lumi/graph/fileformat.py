"""The ``.lumi`` file: a safetensors file whose ``__metadata__`` holds the graph as JSON.

Tensors carry constants and weights (``const/<node id>``); metadata carries ``format``
(``"lumi-graph"``), ``format_version`` and ``graph``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..errors import FormatError, LumiError
from .ir import Graph, Node

FORMAT = "lumi-graph"
FORMAT_VERSION = "1.0"
MAX_HEADER_BYTES = 16 << 20
MAX_FILE_BYTES = 8 << 30
MAX_NODES = 1_000_000
MAX_ELEMENTS = 1 << 40


def to_json(graph: Graph) -> dict:
    return {
        "nodes": [
            {"id": n.id, "op": n.op, "src": list(n.src), "shape": list(n.shape), "dtype": n.dtype,
             "attrs": dict(n.attrs), **({"loc": n.loc} if n.loc else {})}
            for n in graph.nodes
        ],
        "inputs": [{"name": k, "node": v} for k, v in graph.inputs.items()],
        "outputs": [{"name": k, "node": v} for k, v in graph.outputs.items()],
    }


def dumps(graph: Graph) -> bytes:
    """The ``.lumi`` bytes of a graph; the same graph always gives the same bytes."""
    tensors = {f"const/{i}": np.asarray(a, order="C") for i, a in graph.constants.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "graph": json.dumps(to_json(graph))}
    return _canonical(st_save(tensors, metadata=meta))


def _canonical(data: bytes) -> bytes:
    """Rewrite the header with sorted keys: safetensors writes it in hash-map order, and
    content-addressed storage needs equal graphs to give equal files."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data[8 + n :]


def save(graph: Graph, path) -> None:
    data = dumps(graph)
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _header(data: bytes) -> dict:
    if len(data) < 8:
        raise FormatError("not a .lumi file: shorter than a safetensors header (truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise FormatError(f"header declares {n} bytes, past the {MAX_HEADER_BYTES}-byte limit; refusing the file")
    if 8 + n > len(data):
        raise FormatError(f"file is truncated: header declares {n} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not a .lumi file: its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise FormatError("not a .lumi file: its header is not a JSON object")
    return header


def _check_sizes(header: dict) -> None:
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FormatError(f"tensor {name!r} has a malformed shape")
        if math.prod(shape) > MAX_ELEMENTS:
            raise FormatError(f"tensor {name!r} declares {math.prod(shape)} elements, past the limit")


def loads(data: bytes) -> Graph:
    """Parse ``.lumi`` bytes, refusing anything malformed with a :class:`FormatError`."""
    header = _header(data)
    _check_sizes(header)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise FormatError(f"not a Lumi graph: metadata format is {meta.get('format')!r}, expected {FORMAT!r}")
    version = str(meta.get("format_version", ""))
    major = version.split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise FormatError(
            f"format version {version!r} is not supported by this Lumi (reads {FORMAT_VERSION.split('.')[0]}.x); "
            "upgrade Lumi or re-export the graph with this version"
        )
    try:
        spec = json.loads(meta["graph"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise FormatError(f"graph metadata is missing or not valid JSON ({e})") from None
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise FormatError(f"tensor data is corrupt or truncated ({e})") from None
    return _graph_from_json(spec, tensors)


def _graph_from_json(spec, tensors: dict) -> Graph:
    try:
        raw_nodes = spec["nodes"]
        if len(raw_nodes) > MAX_NODES:
            raise FormatError(f"graph declares {len(raw_nodes)} nodes, past the {MAX_NODES} limit")
        nodes, constants = [], {}
        for raw in raw_nodes:
            shape = tuple(raw["shape"])
            if math.prod(d for d in shape if isinstance(d, int)) > MAX_ELEMENTS:
                raise FormatError(f"node {raw['id']} declares a shape {list(shape)} past the size limit")
            node = Node(int(raw["id"]), str(raw["op"]), tuple(int(s) for s in raw["src"]), shape,
                        str(raw["dtype"]), dict(raw.get("attrs", {})), raw.get("loc"))
            if node.op == "const":
                key = f"const/{node.id}"
                if key not in tensors:
                    raise FormatError(f"constant node {node.id} has no tensor {key!r}")
                constants[node.id] = tensors[key]
            nodes.append(node)
        inputs = {str(i["name"]): int(i["node"]) for i in spec["inputs"]}
        outputs = {str(o["name"]): int(o["node"]) for o in spec["outputs"]}
    except LumiError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise FormatError(f"graph JSON is malformed ({type(e).__name__}: {e})") from None
    try:
        return Graph(nodes, inputs, outputs, constants)
    except LumiError as e:
        raise FormatError(f"graph is invalid: {e}") from None


def load(path) -> Graph:
    """Read a ``.lumi`` file written by :meth:`Graph.export`."""
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise FormatError(f"{path} is {size} bytes, past the {MAX_FILE_BYTES}-byte limit")
    with open(path, "rb") as f:
        return loads(f.read())
