"""The head split refuses an image path it cannot cut (the build then serves the head whole), and
cuts a plain one into graphs that compute the original."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.head_split import CannotSplit, check_split, split_head


def _head(tmp_path, relu_first: bool):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 8)).astype(np.float32), "w1")  # Gemm transB: [out, in]
    b1 = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b1")
    mean = numpy_helper.from_array(rng.normal(size=(8,)).astype(np.float32), "mean")
    w2 = numpy_helper.from_array(rng.normal(size=(2, 5)).astype(np.float32), "w2")
    nodes = [helper.make_node("Relu" if relu_first else "Sub", ["image_emb"] if relu_first else ["image_emb", "mean"], ["x0"]),
             helper.make_node("Gemm", ["x0", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Concat", ["hr", "other"], ["c"], axis=1),
             helper.make_node("Gemm", ["c", "w2"], ["out"], transB=1)]
    g = helper.make_graph(nodes, "h", [helper.make_tensor_value_info("image_emb", TensorProto.FLOAT, ["N", 8]),
                                       helper.make_tensor_value_info("other", TensorProto.FLOAT, ["N", 1])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2])], [w1, b1, mean, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "head.onnx"
    onnx.save(m, str(path))
    return path


def test_plain_image_path_is_split_and_computes_the_head(tmp_path):
    path = _head(tmp_path, relu_first=False)
    spec = split_head(path, "image_emb", tmp_path)
    assert spec["dim"] == 4 and spec["rest"]["input"] == "image_proj"
    feeds = {"image_emb": np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32),
             "other": np.ones((5, 1), np.float32)}
    assert check_split(path, tmp_path, feeds, "image_emb") <= 1e-6


def test_a_non_affine_step_before_the_dense_layer_is_refused(tmp_path):
    with pytest.raises(CannotSplit, match="Relu"):
        split_head(_head(tmp_path, relu_first=True), "image_emb", tmp_path)
