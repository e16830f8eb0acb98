"""What users get wrong, and the errors that tell them what to do."""

from __future__ import annotations

import json
import struct

import lumi
import numpy as np
import pytest
from lumi.graph import fileformat

X = np.ones((2, 3), np.float32)


@pytest.fixture
def lumi_file(tmp_path):
    path = tmp_path / "model.lumi"
    lumi.trace(lambda x: np.tanh(x * 2.0).sum(axis=0), X).export(path)
    return path


def test_unsupported_numpy_function_names_it_and_points_to_python_mode():
    with pytest.raises(lumi.UnsupportedOperation, match=r"numpy\.linalg\.svd .*%%remote --python"):
        lumi.trace(np.linalg.svd, X)
    with pytest.raises(lumi.UnsupportedOperation, match=r"numpy\.fft\.fft"):
        lumi.trace(np.fft.fft, X)


def test_value_dependent_branch_is_refused_at_trace_time():
    def fn(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(lumi.TraceError, match=r"Branching on a traced array .*np\.where"):
        lumi.trace(fn, X)


def test_writing_a_traced_value_into_a_numpy_array_says_how_to_write_it():
    def fn(x):
        cache = np.zeros((4, 3), np.float32)
        cache[0:2] = x[0:2] * 2  # a preallocated NumPy buffer cannot hold a lazy value
        return cache

    with pytest.raises(lumi.TraceError, match=r"np\.concatenate.*traced value"):
        lumi.trace(fn, X)


def test_export_is_safetensors_with_graph_metadata(lumi_file):
    from safetensors import safe_open

    with safe_open(lumi_file, "numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "lumi-graph"
    assert meta["format_version"].startswith("1.")
    graph = json.loads(meta["graph"])
    assert {"nodes", "inputs", "outputs"} <= set(graph)
    assert all({"id", "op", "src", "shape", "dtype", "attrs"} <= set(n) for n in graph["nodes"])


def test_export_is_deterministic():
    def fn(x):
        return np.tanh(x * 2.0 + np.arange(3, dtype=np.float32)).sum(axis=0), x.mean()

    first = {fileformat.dumps(lumi.trace(fn, X)) for _ in range(5)}
    assert len(first) == 1


def test_truncated_file_is_refused(lumi_file):
    data = lumi_file.read_bytes()
    for cut in (4, 20, len(data) - 3):
        with pytest.raises(lumi.FormatError, match="truncated|not a .lumi|corrupt"):
            fileformat.loads(data[:cut])


def test_corrupt_header_is_refused(lumi_file):
    data = bytearray(lumi_file.read_bytes())
    data[10:14] = b"\xff\xfe\x00{"
    with pytest.raises(lumi.FormatError):
        fileformat.loads(bytes(data))


def _rewrite_metadata(data: bytes, change) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    change(header["__metadata__"])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_unknown_major_version_is_refused(lumi_file):
    data = _rewrite_metadata(lumi_file.read_bytes(), lambda m: m.update(format_version="2.0"))
    with pytest.raises(lumi.FormatError, match="version '2.0' is not supported.*upgrade Lumi"):
        fileformat.loads(data)


def test_malformed_graph_json_and_dangling_references_are_refused(lumi_file):
    data = lumi_file.read_bytes()
    with pytest.raises(lumi.FormatError, match="not valid JSON"):
        fileformat.loads(_rewrite_metadata(data, lambda m: m.update(graph="{nodes: [")))

    def dangle(meta):
        g = json.loads(meta["graph"])
        g["nodes"][-1]["src"] = [99]
        meta["graph"] = json.dumps(g)

    with pytest.raises(lumi.FormatError, match="earlier nodes"):
        fileformat.loads(_rewrite_metadata(data, dangle))


def test_oversized_declarations_are_refused(lumi_file):
    huge_header = struct.pack("<Q", 1 << 40) + b"{}"
    with pytest.raises(lumi.FormatError, match="past the"):
        fileformat.loads(huge_header)

    def enormous(meta):
        g = json.loads(meta["graph"])
        g["nodes"][0]["shape"] = [1 << 30, 1 << 30]
        meta["graph"] = json.dumps(g)

    with pytest.raises(lumi.FormatError, match="size limit"):
        fileformat.loads(_rewrite_metadata(lumi_file.read_bytes(), enormous))


def test_a_pickle_is_not_a_lumi_file(tmp_path):
    import pickle

    path = tmp_path / "evil.lumi"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(lumi.FormatError):
        lumi.load(path)


# -- every way a hostile file broke the loader before: each now a FormatError ---------------------------
def _rewrite_header(data: bytes, change) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    body = change(header, body) or body
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _graph_change(change):
    def meta(m):
        g = json.loads(m["graph"])
        change(g)
        m["graph"] = json.dumps(g)
    return meta


def _reshape_file(tmp_path):
    path = tmp_path / "reshape.lumi"
    lumi.trace(lambda x: (x * 2.0).reshape(3, 2), X).export(path)
    return path.read_bytes()


def _drop_reshape_shape(g):
    next(n for n in g["nodes"] if n["op"] == "reshape")["attrs"].pop("shape")


def _extra_tensor(dtype):
    def change(header, body):  # a well-formed extra tensor, 2 elements of 2 (BF16) or 1 (F8) bytes
        size = 4 if dtype == "BF16" else 2
        header["extra"] = {"dtype": dtype, "shape": [2], "data_offsets": [len(body), len(body) + size]}
        return body + b"\0" * size
    return change


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda d, p: _rewrite_metadata(d, lambda m: m.update(graph="[" * 5000 + "]" * 5000)), id="deep-json"),
    pytest.param(lambda d, p: _rewrite_header(d, lambda h, b: h.update(__metadata__=["lumi-graph"])),
                 id="metadata-list"),
    pytest.param(lambda d, p: _rewrite_metadata(d, _graph_change(
        lambda g: g["nodes"][0]["attrs"].update(name=["x"]))), id="attrs-name-list"),
    pytest.param(lambda d, p: _rewrite_metadata(d, lambda m: m.update(
        graph=m["graph"].replace('"id": 0', '"id": Infinity', 1).replace('"id":0', '"id":Infinity', 1))),
        id="id-infinity"),
    pytest.param(lambda d, p: _rewrite_metadata(_reshape_file(p), _graph_change(_drop_reshape_shape)),
                 id="reshape-without-shape"),
    pytest.param(lambda d, p: _rewrite_header(d, _extra_tensor("BF16")), id="extra-bf16-tensor"),
    pytest.param(lambda d, p: _rewrite_header(d, _extra_tensor("F8_E4M3")), id="extra-f8-tensor"),
])
def test_hostile_files_raise_format_error_only(lumi_file, tmp_path, mutate):
    data = mutate(lumi_file.read_bytes(), tmp_path)
    with pytest.raises(lumi.FormatError):
        fileformat.loads(data)


def test_json_depth_is_measured_without_parsing():
    assert fileformat.json_depth(b'{"a": [1, "[[[[", {"b": []}]}') == 4
    assert fileformat.json_depth("[" * 100_000) == 100_000
    with pytest.raises(lumi.LumiError, match="nests 100000 levels"):
        fileformat.parse_json("[" * 100_000 + "]" * 100_000, "the text")
