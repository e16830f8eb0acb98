"""Request and response bodies: Lumi's JSON and safetensors forms, and the Open Inference Protocol's.

Lumi (``/v1/endpoints/{name}/infer``): JSON ``{"inputs": {name: nested lists}}`` (or a bare
nested list for a one-input graph) answered with ``{"outputs": {name: nested lists}}``; or a
safetensors body (one tensor per input) answered with a safetensors body.

Open Inference Protocol / KServe v2 (``/v2/models/{name}/infer``): ``{"inputs": [{"name",
"shape", "datatype", "data"}]}``, including Triton's binary tensor extension (a JSON header of
``Inference-Header-Content-Length`` bytes followed by raw tensors).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..errors import ShapeError
from ..graph.fileformat import MAX_ELEMENTS, parse_json, safetensors_header
from ..graph.ir import Graph

SAFETENSORS_TYPES = ("application/octet-stream", "application/safetensors", "application/vnd.safetensors")
V2_DATATYPES = {"float16": "FP16", "float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64",
                "bool": "BOOL"}
V2_DTYPES = {v: k for k, v in V2_DATATYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
# Non-finite floats in JSON bodies, as proto3's JSON mapping writes them (bare NaN is not JSON).
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# -- request bodies (pydantic: validated here, and described in the gateway's OpenAPI schema) --------
Scalar = StrictBool | StrictInt | StrictFloat | Literal["NaN", "Infinity", "-Infinity"]
Tensor = Annotated[list[Any], Field(description="nested lists of numbers (non-finite floats as \"NaN\", "
                                                 "\"Infinity\", \"-Infinity\")")]
Parameter = StrictBool | StrictInt | StrictFloat | StrictStr


class InferRequest(BaseModel):
    """``POST /v1/endpoints/{name}/infer`` as JSON."""

    inputs: dict[str, Tensor | Scalar] | Tensor = Field(
        description="input name -> nested lists; a bare nested list for a one-input model",
        examples=[{"x": [[0.0, 1.0]]}])


class V2Input(BaseModel):
    """One input tensor of an Open Inference Protocol request."""

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                      "FP32", "FP64", "BF16", "BYTES"]
    parameters: dict[str, Parameter] | None = None
    data: Tensor | Scalar | None = None


class V2Output(BaseModel):
    """A requested output (``parameters.binary_data`` asks for it in binary)."""

    name: str
    parameters: dict[str, Parameter] | None = None


class V2InferRequest(BaseModel):
    """``POST /v2/models/{name}[/versions/{v}]/infer``: the JSON document (or, with Triton's binary
    extension, its JSON header)."""

    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    inputs: list[V2Input] = Field(min_length=1)
    outputs: list[V2Output] | None = None


class RollbackRequest(BaseModel):
    """``POST /v1/endpoints/{name}/rollback``; without ``version``, the one before the active version."""

    version: Annotated[int, Field(ge=1)] | None = None


class ScaleRequest(BaseModel):
    """``POST /v1/endpoints/{name}/scale``."""

    replicas: Annotated[int, Field(ge=0, le=1024)]


def is_safetensors(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in SAFETENSORS_TYPES


def _array(name: str, value, dtype: str, shape=()) -> np.ndarray:
    """A JSON value as an array of ``dtype``, refusing values that would change meaning on the way. An empty
    list is zero rows of the declared trailing ``shape``."""
    try:
        a = np.asarray(value)
    except ValueError as e:
        raise ShapeError(f"input {name!r} is not a rectangular array ({e})") from None
    want = np.dtype(dtype).kind
    if a.dtype.kind in "UO" and want == "f":  # "NaN", "Infinity", "-Infinity" beside numbers
        cells = np.asarray(value, dtype=object)
        if all(isinstance(v, int | float) and not isinstance(v, bool) or isinstance(v, str) and v in NON_FINITE
               for v in cells.flat):
            a = np.array([NON_FINITE.get(v, v) if isinstance(v, str) else v for v in cells.flat]).reshape(cells.shape)
    if a.size == 0 and a.ndim == 1 and len(shape) > 1 and all(isinstance(d, int) for d in shape[1:]):
        a = a.reshape(0, *shape[1:])
    kind = a.dtype.kind
    if kind not in "biuf":
        raise ShapeError(f"input {name!r} must hold numbers (or \"NaN\", \"Infinity\", \"-Infinity\"), got "
                         f"{a.dtype.name} values")
    if want == "b" and kind != "b":
        raise ShapeError(f"input {name!r} expects bool values (true/false), got {a.dtype.name}")
    if want in "iu" and kind == "f":
        raise ShapeError(f"input {name!r} expects {dtype} values, got floats; send whole numbers")
    if want in "iu" and kind in "iu" and a.size and (a.min() < np.iinfo(dtype).min or a.max() > np.iinfo(dtype).max):
        raise ShapeError(f"input {name!r} holds values outside the range of {dtype}")
    return a.astype(dtype)


def decode_json(body: bytes, graph: Graph) -> list[np.ndarray]:
    """``{"inputs": {name: nested lists}}`` (or a bare value for a one-input graph) as input arrays."""
    request = InferRequest.model_validate(parse_json(body, "the body", ShapeError))
    specs = graph.input_specs()
    inputs = request.inputs
    if not isinstance(inputs, dict):
        if len(specs) != 1:
            raise ShapeError(f"this model takes {len(specs)} inputs; name them: {{\"inputs\": {{name: ...}}}}")
        inputs = {specs[0][0]: inputs}
    return _ordered(inputs, specs, _array)


def _ordered(inputs: dict, specs, convert) -> list[np.ndarray]:
    """``convert(name, value, dtype, shape)`` for each declared input, refusing unknown and missing names."""
    names = [n for n, *_ in specs]
    unknown = sorted(set(inputs) - set(names))
    missing = [n for n in names if n not in inputs]
    if unknown or missing:
        raise ShapeError(f"inputs are {names}; " + (f"missing {missing}" if missing else f"unknown {unknown}"))
    return [convert(name, inputs[name], dtype, shape) for name, shape, dtype in specs]


def decode_safetensors(body: bytes, graph: Graph) -> list[np.ndarray]:
    safetensors_header(body, ShapeError)  # size, nesting, dtypes (no BF16/F8) and offsets, before reading
    try:
        tensors = st_load(body)
    except (SafetensorError, ValueError, KeyError) as e:
        raise ShapeError(f"the body is not a valid safetensors file ({e})") from None
    return _ordered(tensors, graph.input_specs(), lambda name, value, dtype, shape: value)


def _lists(a: np.ndarray) -> list:
    """An array as nested lists for JSON, with non-finite floats written as proto3 JSON strings."""
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return a.tolist()
    out = a.astype(object)
    out[np.isnan(a)] = "NaN"
    out[np.isposinf(a)] = "Infinity"
    out[np.isneginf(a)] = "-Infinity"
    return out.tolist()


def encode_json(graph: Graph, outputs: list[np.ndarray], **extra) -> dict:
    return {**extra, "outputs": {name: _lists(o) for name, o in zip(graph.outputs, outputs)}}


def encode_safetensors(graph: Graph, outputs: list[np.ndarray]) -> bytes:
    return st_save({name: np.ascontiguousarray(o) for name, o in zip(graph.outputs, outputs)})


# -- Open Inference Protocol ------------------------------------------------------------------
def v2_tensor_spec(name: str, shape, dtype: str) -> dict:
    return {"name": name, "datatype": V2_DATATYPES[dtype], "shape": [d if isinstance(d, int) else -1 for d in shape]}


def header_length(value: str | None, body_size: int) -> int | None:
    """The ``Inference-Header-Content-Length`` header, checked against the body."""
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) > body_size:
        raise ShapeError(f"{HEADER_LENGTH} must be a whole number of bytes, at most the body's {body_size}; "
                         f"got {value[:40]!r}")
    return int(value)


def decode_v2(body: bytes, length: int | None, graph: Graph) -> tuple[list[np.ndarray], V2InferRequest]:
    """Inputs of a v2 inference request, and the request document (for ``id`` and ``outputs``)."""
    head, tail = (body[:length], body[length:]) if length is not None else (body, b"")
    request = V2InferRequest.model_validate(parse_json(head, "the inference request", ShapeError))
    offset, binary = 0, {}
    for item in request.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        itemsize = np.dtype(V2_DTYPES.get(item.datatype, "uint8")).itemsize
        if type(size) is not int or size < 0 or size % itemsize or offset + size > len(tail):
            raise ShapeError(f"input {item.name!r}: binary_data_size must be a whole number of {item.datatype} "
                             f"elements within the {len(tail) - offset} bytes left in the body, got {size!r}")
        binary[item.name] = tail[offset : offset + size]
        offset += size

    def convert(name, item: V2Input, dtype, shape):
        if V2_DTYPES.get(item.datatype) != dtype:
            raise ShapeError(f"input {name!r} expects datatype {V2_DATATYPES[dtype]}, got {item.datatype}")
        count = math.prod(item.shape)
        if count > MAX_ELEMENTS:
            raise ShapeError(f"input {name!r} declares shape {item.shape}, past the size limit")
        if name in binary:
            flat = np.frombuffer(binary[name], dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            flat = _array(name, [] if item.data is None else item.data, dtype).reshape(-1)
        if flat.size != count:
            raise ShapeError(f"input {name!r} declares shape {item.shape} but carries {flat.size} values")
        return flat.astype(dtype).reshape(item.shape)

    return _ordered({i.name: i for i in request.inputs}, graph.input_specs(), convert), request


def encode_v2(graph: Graph, outputs: list[np.ndarray], request: V2InferRequest, model: str, version: int
              ) -> tuple[bytes, int | None]:
    """A v2 response body and, when any tensor travels as binary, the JSON header's length."""
    binary_default = bool((request.parameters or {}).get("binary_data_output", False))
    by_name = dict(zip(graph.outputs, outputs))
    if request.outputs:
        unknown = [o.name for o in request.outputs if o.name not in by_name]
        if unknown:
            raise ShapeError(f"unknown outputs {unknown}; outputs are {list(by_name)}")
        items = [(o.name, bool((o.parameters or {}).get("binary_data", binary_default))) for o in request.outputs]
    else:
        items = [(name, binary_default) for name in by_name]
    response, chunks = [], []
    for name, binary in items:
        a = np.ascontiguousarray(by_name[name])
        entry = {"name": name, "datatype": V2_DATATYPES[a.dtype.name], "shape": list(a.shape)}
        if binary:
            data = a.astype(a.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = _lists(a.reshape(-1))
        response.append(entry)
    head = json.dumps({"model_name": model, "model_version": str(version), "outputs": response,
                       **({"id": request.id} if request.id is not None else {})}, allow_nan=False).encode()
    return head + b"".join(chunks), (len(head) if chunks else None)
