"""An ONNX CNN deployed with ``lumi deploy model.onnx`` answers over /v1 and KServe v2, batched."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(2)
W = {"w": RNG.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "b": RNG.standard_normal(8).astype(np.float32),
     "fc": RNG.standard_normal((10, 8)).astype(np.float32), "fcb": RNG.standard_normal(10).astype(np.float32)}


def cnn_model():
    """Conv + Relu + MaxPool + GlobalAveragePool + Flatten + Gemm + Softmax, batch dimension unnamed."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 10])],
                              [numpy_helper.from_array(v, k) for k, v in W.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def reference(x):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(cnn_model().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]


@pytest.mark.slow
def test_lumi_deploy_of_an_onnx_cnn_batches_and_answers_v1_and_v2(gateway, client, tmp_path):
    import onnx

    path = tmp_path / "cnn.onnx"
    onnx.save(cnn_model(), path)
    r = subprocess.run([sys.executable, "-m", "lumi.cli", "deploy", str(path), "--name", "onnx-cnn",
                        "--scaledown-window", "5"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "deployed onnx-cnn version 1" in r.stdout and "batching on" in r.stdout, r.stdout
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = reference(x)
    v1 = client.post("/v1/endpoints/onnx-cnn/infer", json={"inputs": {"x": x.tolist()}})
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose(np.asarray(v1.json()["outputs"]["probs"], np.float32), want, rtol=1e-4, atol=1e-6)
    v2 = client.post("/v2/models/onnx-cnn/infer", json={"inputs": [
        {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    (out,) = v2.json()["outputs"]
    assert out["name"] == "probs" and out["shape"] == [2, 10]
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(2, 10), want, rtol=1e-4, atol=1e-6)
    assert client.delete("/v1/endpoints/onnx-cnn").status_code == 200


@pytest.mark.slow
def test_deploy_magic_with_onnx_serves_the_file(shell, gateway, tmp_path, capsys):
    import onnx

    path = tmp_path / "cnn.onnx"
    onnx.save(cnn_model(), path)
    result = shell.run_cell(f"%%deploy onnx_magic --onnx {path}\n")
    assert result.success, result.error_in_exec
    assert "batching on" in capsys.readouterr().out
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(shell.user_ns["onnx_magic"](x), reference(x), rtol=1e-4, atol=1e-6)
