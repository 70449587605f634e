"""Weights too small to matter are set to zero, the outputs do not change, and the committed bundle
has none left (on Intel CPUs they made the head 27x slower: training/tiny_weights.py)."""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.tiny_weights import THRESHOLD, count_tiny_weights, flush_tiny_weights, onnx_files

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "ctr-synth"


def _model(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 8)).astype(np.float32)
    w[0, :3] = [1e-39, -3e-36, 2e-31]  # subnormal, tiny, tiny
    w[1, 0] = 5e-29                    # small but kept
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return w


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_tiny_weights_are_zeroed_and_outputs_unchanged(tmp_path):
    path = tmp_path / "m.onnx"
    w = _model(path)
    x = np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)
    before = _run(path, x)
    assert count_tiny_weights(path) == 3
    assert flush_tiny_weights(path) == 3
    after = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])
    assert after[0, 0] == 0 and after[0, 1] == 0 and after[0, 2] == 0
    assert after[1, 0] == np.float32(5e-29)
    np.testing.assert_array_equal(np.delete(after.ravel(), [0, 1, 2]), np.delete(w.ravel(), [0, 1, 2]))
    assert np.max(np.abs(_run(path, x) - before)) <= 1e-6
    assert flush_tiny_weights(path) == 0  # idempotent: a second pass writes nothing


def test_committed_bundle_has_no_tiny_weights():
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    counts = {f: count_tiny_weights(BUNDLE / f) for f in onnx_files(manifest)}
    assert counts == {f: 0 for f in counts}, f"weights below {THRESHOLD:g}: run python -m training.tiny_weights"
