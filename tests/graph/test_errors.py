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


def test_assignment_into_a_traced_array_is_refused():
    def fn(x):
        x[0] = 1
        return x

    with pytest.raises(lumi.UnsupportedOperation, match="immutable"):
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
