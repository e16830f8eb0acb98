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

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..errors import ShapeError
from ..graph.ir import Graph

SAFETENSORS_TYPES = ("application/octet-stream", "application/safetensors", "application/vnd.safetensors")
V2_DATATYPES = {"float16": "FP16", "float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64",
                "bool": "BOOL"}
V2_DTYPES = {v: k for k, v in V2_DATATYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"


def is_safetensors(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in SAFETENSORS_TYPES


def _array(name: str, value, dtype: str) -> np.ndarray:
    """A JSON value as an array of ``dtype``, refusing values that would change meaning on the way."""
    try:
        a = np.asarray(value)
    except ValueError as e:
        raise ShapeError(f"input {name!r} is not a rectangular array ({e})") from None
    kind = a.dtype.kind
    if kind not in "biuf":
        raise ShapeError(f"input {name!r} must hold numbers, got {a.dtype.name} values")
    want = np.dtype(dtype).kind
    if want == "b" and kind != "b":
        raise ShapeError(f"input {name!r} expects bool values (true/false), got {a.dtype.name}")
    if want in "iu" and kind == "f":
        raise ShapeError(f"input {name!r} expects {dtype} values, got floats; send whole numbers")
    return a.astype(dtype)


def decode_json(body: bytes, graph: Graph) -> list[np.ndarray]:
    """``{"inputs": {name: nested lists}}`` (or a bare value for a one-input graph) as input arrays."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShapeError(f"the body is not JSON ({e}); send {{\"inputs\": {{name: nested lists}}}}") from None
    specs = graph.input_specs()
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if inputs is None:
        raise ShapeError('the JSON body needs an "inputs" field: {"inputs": {"' + specs[0][0] + '": [[...]]}}')
    if not isinstance(inputs, dict):
        if len(specs) != 1:
            raise ShapeError(f"this model takes {len(specs)} inputs; name them: {{\"inputs\": {{name: ...}}}}")
        inputs = {specs[0][0]: inputs}
    return _ordered(inputs, specs, lambda name, value, dtype: _array(name, value, dtype))


def _ordered(inputs: dict, specs, convert) -> list[np.ndarray]:
    names = [n for n, *_ in specs]
    unknown = sorted(set(inputs) - set(names))
    missing = [n for n in names if n not in inputs]
    if unknown or missing:
        raise ShapeError(f"inputs are {names}; " + (f"missing {missing}" if missing else f"unknown {unknown}"))
    return [convert(name, inputs[name], dtype) for name, _, dtype in specs]


def decode_safetensors(body: bytes, graph: Graph) -> list[np.ndarray]:
    try:
        tensors = st_load(body)
    except (SafetensorError, ValueError) as e:
        raise ShapeError(f"the body is not a valid safetensors file ({e})") from None
    return _ordered(tensors, graph.input_specs(), lambda name, value, dtype: value)


def encode_json(graph: Graph, outputs: list[np.ndarray], **extra) -> dict:
    return {**extra, "outputs": {name: o.tolist() for name, o in zip(graph.outputs, outputs)}}


def encode_safetensors(graph: Graph, outputs: list[np.ndarray]) -> bytes:
    return st_save({name: np.ascontiguousarray(o) for name, o in zip(graph.outputs, outputs)})


# -- Open Inference Protocol ------------------------------------------------------------------
def v2_tensor_spec(name: str, shape, dtype: str) -> dict:
    return {"name": name, "datatype": V2_DATATYPES[dtype], "shape": [d if isinstance(d, int) else -1 for d in shape]}


def decode_v2(body: bytes, header_length: int | None, graph: Graph) -> tuple[list[np.ndarray], dict]:
    """Inputs of a v2 inference request, and the request document (for ``id`` and ``outputs``)."""
    head, tail = (body[:header_length], body[header_length:]) if header_length is not None else (body, b"")
    try:
        doc = json.loads(head)
        raw = {i["name"]: i for i in doc["inputs"]}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ShapeError(f'the body is not an inference request ({e}); send {{"inputs": [{{"name", "shape", '
                         '"datatype", "data"}]}') from None
    offset = 0
    binary = {}
    for item in doc["inputs"]:
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            binary[item["name"]] = tail[offset : offset + int(size)]
            offset += int(size)

    def convert(name, item, dtype):
        datatype = item.get("datatype")
        if V2_DTYPES.get(datatype) != dtype:
            raise ShapeError(f"input {name!r} expects datatype {V2_DATATYPES[dtype]}, got {datatype}")
        shape = [int(d) for d in item.get("shape", [])]
        if name in binary:
            flat = np.frombuffer(binary[name], dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            flat = _array(name, item.get("data"), dtype).reshape(-1)
        if flat.size != int(np.prod(shape)):
            raise ShapeError(f"input {name!r} declares shape {shape} but carries {flat.size} values")
        return flat.astype(dtype).reshape(shape)

    return _ordered(raw, graph.input_specs(), convert), doc


def encode_v2(graph: Graph, outputs: list[np.ndarray], doc: dict, model: str, version: int) -> tuple[bytes, int | None]:
    """A v2 response body and, when any tensor travels as binary, the JSON header's length."""
    wanted = doc.get("outputs")
    binary_default = bool((doc.get("parameters") or {}).get("binary_data_output", False))
    by_name = dict(zip(graph.outputs, outputs))
    if wanted:
        unknown = [o.get("name") for o in wanted if o.get("name") not in by_name]
        if unknown:
            raise ShapeError(f"unknown outputs {unknown}; outputs are {list(by_name)}")
        items = [(o["name"], (o.get("parameters") or {}).get("binary_data", binary_default)) for o in wanted]
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
            entry["data"] = a.reshape(-1).tolist()
        response.append(entry)
    head = json.dumps({"model_name": model, "model_version": str(version), "outputs": response,
                       **({"id": doc["id"]} if "id" in doc else {})}).encode()
    return head + b"".join(chunks), (len(head) if chunks else None)
