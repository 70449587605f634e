"""ONNX export (opset 17, TorchScript exporter) and onnxruntime-vs-PyTorch checks on real inputs.
Every exported file has its weights below 1e-30 set to zero (tiny_weights.py: subnormal arithmetic
made the head 27x slower on Intel CPUs); the checks compare that file with PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .tiny_weights import flush_tiny_weights

OPSET = 17


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export_image_encoder(enc, path: Path, sample: np.ndarray) -> None:
    x = torch.from_numpy(sample[:2])
    torch.onnx.export(enc.eval(), (x,), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["pixels"], output_names=["embedding"],
                      dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}})
    onnx.checker.check_model(str(path))
    flush_tiny_weights(path)


def export_text_encoder(enc, path: Path, ids: np.ndarray, mask: np.ndarray) -> None:
    args = (torch.from_numpy(ids[:3]), torch.from_numpy(mask[:3]))
    torch.onnx.export(enc.eval(), args, str(path), dynamo=False, opset_version=OPSET,
                      input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                    "attention_mask": {0: "batch", 1: "length"},
                                    "embedding": {0: "batch"}})
    onnx.checker.check_model(str(path))
    flush_tiny_weights(path)


HEAD_INPUTS = ["image_emb", "image_oov", "text_emb", "text_oov", "fields_emb"]
HEAD_OUTPUTS = ["pi", "mu", "sigma"]


def export_head(head, path: Path, inputs: list[np.ndarray]) -> None:
    args = tuple(torch.from_numpy(a[:4]) for a in inputs)
    dyn = {n: {0: "batch"} for n in HEAD_INPUTS + HEAD_OUTPUTS}
    torch.onnx.export(head.eval(), args, str(path), dynamo=False, opset_version=OPSET,
                      input_names=HEAD_INPUTS, output_names=HEAD_OUTPUTS, dynamic_axes=dyn)
    onnx.checker.check_model(str(path))
    flush_tiny_weights(path)


@torch.no_grad()
def max_abs_diff(module, path: Path, feeds: dict[str, np.ndarray]) -> float:
    """Max |onnxruntime - PyTorch| over all outputs for one batch of real inputs."""
    sess = _session(path)
    ort_out = sess.run(None, feeds)
    t_out = module.eval()(*[torch.from_numpy(v) for v in feeds.values()])
    if isinstance(t_out, torch.Tensor):
        t_out = (t_out,)
    return max(float(np.max(np.abs(o - t.numpy()))) for o, t in zip(ort_out, t_out))
