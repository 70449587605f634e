"""Weights too small to matter, set to zero in an exported ONNX file, because on many x86 CPUs they
cost more than all the rest of the arithmetic.

Training leaves dead weights behind: AdamW's decay shrinks every parameter that gets no gradient
(units that never fire, inputs that never vary) by the same factor each step, down into float32's
subnormal range (< 1.18e-38) and just above it. A multiply that takes or makes a subnormal needs a
microcode assist on Intel cores (~100+ cycles instead of one vector lane). ONNX Runtime's
flush-to-zero option reaches only its pool threads and the thread that creates the process's first
session, not the server's several one-thread sessions on worker threads. On an Intel
Xeon (Sapphire Rapids), ctr-synth 1.4.0's head had 44,670 of its 195,277 weights below 1e-30 and
ran 100 rows in 8.2 ms; with them at zero, 0.31 ms (one thread, the same inputs). On the AMD EPYC
the bundle was built on it ran in 0.44 ms either way, so nobody had seen it.

A weight below 1e-30 adds less than 1e-30 × |x| to a sum: nothing a float32 result of the head or
the encoders (values of order 1e-4 and up, whose last bit is ~1e-11 or more) can hold. The
threshold also keeps products with inputs down to ~1e-8 out of the subnormal range.

    python -m training.tiny_weights models/ctr-synth    # an existing bundle, in place
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

THRESHOLD = 1e-30


def _tiny(a: np.ndarray, threshold: float) -> np.ndarray:
    return (a != 0) & (np.abs(a) < threshold)


def flush_tiny_weights(path: Path, threshold: float = THRESHOLD) -> int:
    """Set every float32 initializer entry with 0 < |w| < threshold to 0, in place; returns how many."""
    model = onnx.load(str(path))
    flushed = 0
    for t in model.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(t)
        tiny = _tiny(a, threshold)
        n = int(tiny.sum())
        if n == 0:
            continue
        a = a.copy()
        a[tiny] = 0
        t.CopyFrom(numpy_helper.from_array(a, t.name))
        flushed += n
    if flushed:
        onnx.save(model, str(path))
    return flushed


def count_tiny_weights(path: Path, threshold: float = THRESHOLD) -> int:
    """Float32 initializer entries with 0 < |w| < threshold."""
    model = onnx.load(str(path))
    n = 0
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT:
            n += int(_tiny(numpy_helper.to_array(t), threshold).sum())
    return n


def onnx_files(manifest: dict) -> list[str]:
    """Every ONNX file a manifest names: the encoders, the head and its split parts."""
    head = manifest["head"]
    files = [manifest["encoders"]["image"]["file"], manifest["encoders"]["text"]["file"], head["file"]]
    split = head.get("image_projection")
    if split:
        files += [split["file"], split["rest"]["file"]]
    return files


def _outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def flush_bundle(bundle: Path) -> dict[str, dict]:
    """Flush every ONNX file of a bundle in place and record the new hashes in its manifest.

    A changed encoder gets a new content hash and so a new version: its cache keys change with it,
    as for any new encoder. Each file's largest output change on the parity inputs is returned and
    recorded under the manifest's `onnx_vs_pytorch_max_abs_diff` as `<file>_tiny_weights_flushed`.
    """
    from .head_split import parity_feeds
    from .manifest_schema import check_manifest, sha256_file
    from .tokenizer import encode, load_tokenizer, pad_batch

    mpath = bundle / "manifest.json"
    manifest = json.loads(mpath.read_text())
    head = manifest["head"]
    feeds_head = parity_feeds(bundle, manifest)
    split = head.get("image_projection")
    text = manifest["encoders"]["text"]
    items = [json.loads(line) for line in (bundle / manifest["parity"]["items"]).read_text().splitlines() if line]
    titles = [t for it in items if (t := it["item"].get("title", "")).strip()]
    ids, mask = pad_batch([s for s in encode(load_tokenizer(bundle / text["tokenizer_dir"]), titles, text["max_length"]) if s])
    feeds: dict[str, dict[str, np.ndarray]] = {
        head["file"]: feeds_head,
        text["file"]: {text["inputs"]["input_ids"]: ids, text["inputs"]["attention_mask"]: mask},
    }
    if split:
        feeds[split["file"]] = {head["inputs"]["image"]: feeds_head[head["inputs"]["image"]]}
        rest = {k: v for k, v in feeds_head.items() if k != head["inputs"]["image"]}
        rest[split["rest"]["input"]] = _outputs(bundle / split["file"], feeds[split["file"]])[0]
        feeds[split["rest"]["file"]] = rest
    report: dict[str, dict] = {}
    for f in onnx_files(manifest):
        before = _outputs(bundle / f, feeds[f]) if f in feeds else None
        n = flush_tiny_weights(bundle / f)
        diff = 0.0
        if n and before is not None:
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(before, _outputs(bundle / f, feeds[f])))
        report[f] = {"flushed": n, "max_abs_diff": diff}
        if n:
            manifest["files"][f] = {"sha256": sha256_file(bundle / f), "bytes": (bundle / f).stat().st_size}
            manifest.setdefault("onnx_vs_pytorch_max_abs_diff", {})[f"{Path(f).stem}_tiny_weights_flushed"] = diff
    for enc in manifest["encoders"].values():
        sha = manifest["files"][enc["file"]]["sha256"]
        enc["sha256"], enc["version"] = sha, sha[:16]
    head["sha256"] = manifest["files"][head["file"]]["sha256"]
    if split:
        split["sha256"] = manifest["files"][split["file"]]["sha256"]
        split["rest"]["sha256"] = manifest["files"][split["rest"]["file"]]["sha256"]
    check_manifest(manifest)
    mpath.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    args = ap.parse_args(argv)
    for f, r in flush_bundle(args.bundle).items():
        print(f"{f}: {r['flushed']} weights below {THRESHOLD:g} set to 0, max |output change| {r['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
