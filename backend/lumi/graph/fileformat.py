"""The ``.lumi`` file: a safetensors file whose ``__metadata__`` holds the graph as JSON.

Tensors carry constants and weights (``const/<node id>``); metadata carries ``format``
(``"lumi-graph"``), ``format_version`` and ``graph``. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import re
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


MAX_JSON_DEPTH = 64
# The dtypes safetensors' NumPy loader reads, with their sizes (BF16 and the F8 types have no NumPy dtype).
TENSOR_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1,
                 "U8": 1, "BOOL": 1}
# a JSON string, or an unterminated one up to the end: every quote starts a match that succeeds, so one pass
# is linear (a pattern that could fail re-scanned the rest of the text from each quote: quadratic); possessive,
# so no backtracking stack on long strings
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)


def json_depth(text: bytes | str) -> int:
    """How deeply arrays and objects nest in a JSON text, found without parsing it (so never recursing)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    codes = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, codes.size, 1 << 16):  # in slices, so memory stays small however long the text
        c = codes[start : start + (1 << 16)]
        steps = ((c == 0x5B) | (c == 0x7B)).view(np.int8) - ((c == 0x5D) | (c == 0x7D)).view(np.int8)
        levels = np.cumsum(steps, dtype=np.int64) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: bytes | str, what: str, error: type[LumiError] = LumiError, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` that refuses, with ``error``, text nested past ``max_depth`` (checked before
    parsing), invalid JSON, and the non-standard ``NaN``/``Infinity`` literals."""
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{what} nests {depth} levels deep, past the limit of {max_depth}")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise error(f"{what} is not valid JSON ({e})") from None


def safetensors_header(data: bytes, error: type[LumiError] = FormatError) -> dict:
    """The JSON header of safetensors bytes, checked: size, nesting, every tensor's dtype, shape and
    byte range. Raises ``error`` (a :class:`LumiError`) saying what is wrong."""
    if len(data) < 8:
        raise error("not a safetensors file: shorter than its 8-byte header length (truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise error(f"header declares {n} bytes, past the {MAX_HEADER_BYTES}-byte limit; refusing the file")
    if 8 + n > len(data):
        raise error(f"file is truncated: header declares {n} bytes but only {len(data) - 8} follow")
    header = parse_json(data[8 : 8 + n], "the safetensors header", error)
    if not isinstance(header, dict):
        raise error("the safetensors header is not a JSON object")
    body = len(data) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise error("__metadata__ must be an object of strings")
            continue
        if not isinstance(info, dict):
            raise error(f"tensor {name!r} is described by {type(info).__name__}, not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in TENSOR_DTYPES:
            raise error(f"tensor {name!r} has dtype {dtype!r}; supported: {', '.join(sorted(TENSOR_DTYPES))}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise error(f"tensor {name!r} has a malformed shape")
        if math.prod(shape) > MAX_ELEMENTS:
            raise error(f"tensor {name!r} declares {math.prod(shape)} elements, past the limit")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= body):
            raise error(f"tensor {name!r} has data offsets {offsets!r} outside the file's {body} data bytes "
                        "(truncated or corrupt)")
        if offsets[1] - offsets[0] != math.prod(shape) * TENSOR_DTYPES[dtype]:
            raise error(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes do not hold a {dtype} array of shape "
                        f"{shape}")
    return header


def loads(data: bytes) -> Graph:
    """Parse ``.lumi`` bytes, refusing anything malformed with a :class:`FormatError` (and nothing else)."""
    header = safetensors_header(data)
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
    if "graph" not in meta:
        raise FormatError("graph metadata is missing")
    spec = parse_json(meta["graph"], "the graph metadata", FormatError)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OSError, KeyError) as e:
        raise FormatError(f"tensor data is corrupt or truncated ({e})") from None
    try:
        return _graph_from_json(spec, tensors)
    except FormatError:
        raise
    except LumiError as e:
        raise FormatError(f"graph is invalid: {e}") from None
    except Exception as e:  # the loader's contract: whatever a hostile file triggers comes out as FormatError
        raise FormatError(f"graph JSON is malformed ({type(e).__name__}: {e})") from None


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise FormatError(f"{what} must be a list of integers, got {value!r:.80}")
    return tuple(value)


def _graph_from_json(spec, tensors: dict) -> Graph:
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
        raise FormatError('graph JSON must be an object with a "nodes" list')
    raw_nodes = spec["nodes"]
    if len(raw_nodes) > MAX_NODES:
        raise FormatError(f"graph declares {len(raw_nodes)} nodes, past the {MAX_NODES} limit")
    nodes, constants = [], {}
    for raw in raw_nodes:
        if not isinstance(raw, dict):
            raise FormatError(f"a node is {type(raw).__name__}, not an object")
        (node_id,) = _ints([raw.get("id")], "a node id")
        shape = raw.get("shape")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 or isinstance(d, str) for d in shape):
            raise FormatError(f"node {node_id} has a malformed shape {shape!r:.80}")
        if math.prod(d for d in shape if isinstance(d, int)) > MAX_ELEMENTS:
            raise FormatError(f"node {node_id} declares a shape {shape} past the size limit")
        attrs, loc = raw.get("attrs", {}), raw.get("loc")
        if not isinstance(attrs, dict) or not (loc is None or isinstance(loc, str)):
            raise FormatError(f"node {node_id}: attrs must be an object and loc a string")
        if not isinstance(raw.get("op"), str) or not isinstance(raw.get("dtype"), str):
            raise FormatError(f"node {node_id}: op and dtype must be strings")
        node = Node(node_id, raw["op"], _ints(raw.get("src"), f"node {node_id}'s src"), tuple(shape), raw["dtype"],
                    attrs, loc)
        if node.op == "const":
            key = f"const/{node.id}"
            if key not in tensors:
                raise FormatError(f"constant node {node.id} has no tensor {key!r}")
            constants[node.id] = tensors[key]
        nodes.append(node)

    def names(field: str) -> dict[str, int]:
        items = spec.get(field)
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("name"), str)
                                                  and type(i.get("node")) is int for i in items):
            raise FormatError(f'graph JSON needs "{field}": a list of {{"name": string, "node": integer}}')
        return {i["name"]: i["node"] for i in items}

    return Graph(nodes, names("inputs"), names("outputs"), constants)


def load(path) -> Graph:
    """Read a ``.lumi`` file written by :meth:`Graph.export`."""
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise FormatError(f"{path} is {size} bytes, past the {MAX_FILE_BYTES}-byte limit")
    with open(path, "rb") as f:
        return loads(f.read())
