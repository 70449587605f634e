"""The head in two graphs for serving (issue 11): the image tower's first layer alone, and the rest.

The image tower starts with an affine map of the 1280-d image embedding (normalise, then a dense
layer to a few dozen units): 43 % of the head's arithmetic per row, and the same for an image in
every request. `head_image.onnx` is that map; `head_rest.onnx` is the head from its output on. The
server runs the first once per cached image (scorer threads keep the result beside the cached
vector) and the second per request. Together they compute what head.onnx computes: the split is
graph surgery on the exported head, no new weights, and `check_split` measures the difference.

    python -m training.head_split models/ctr-synth     # add the split to an existing bundle
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PROJECTOR_FILE = "head_image.onnx"
REST_FILE = "head_rest.onnx"
PROJECTION = "image_proj"
# Elementwise steps with a constant operand allowed between the input and the dense layer.
_AFFINE = {"Sub", "Mul", "Add", "Div"}


class CannotSplit(ValueError):
    """The graph does not start the image path with elementwise steps and one dense layer."""


def split_head(head_path: Path, image_input: str, out_dir: Path) -> dict:
    """Write PROJECTOR_FILE and REST_FILE into out_dir; returns the manifest's `image_projection`
    (without sha256s). Raises CannotSplit when the image path has another shape."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(head_path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    chain, t = [], image_input
    while True:
        users = consumers.get(t, [])
        if len(users) != 1:
            raise CannotSplit(f"{t} has {len(users)} consumers, expected 1")
        n = users[0]
        others = [x for x in n.input if x != t]
        if n.op_type in _AFFINE and len(others) == 1 and others[0] in inits:
            chain.append(n)
            t = n.output[0]
            continue
        if n.op_type == "Gemm" and n.input[0] == t and all(x in inits for x in n.input[1:]):
            chain.append(n)
            break
        raise CannotSplit(f"{n.op_type} node {n.name!r} on the image path is not an affine step")
    gemm = chain[-1]
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    w = inits[gemm.input[1]]
    dim = int(w.dims[0] if trans_b else w.dims[1])
    proj_out = gemm.output[0]

    chain_ids = {id(n) for n in chain}
    rest_nodes = [n for n in g.node if id(n) not in chain_ids]
    for n in rest_nodes:
        for i, x in enumerate(n.input):
            if x == proj_out:
                n.input[i] = PROJECTION
    for n in chain:
        for i, x in enumerate(n.output):
            if x == proj_out:
                n.output[i] = PROJECTION

    def used(nodes) -> list:
        """The initializers the nodes read, in the head's order (so a split is byte-for-byte reproducible)."""
        names = {x for n in nodes for x in n.input}
        return [t for t in g.initializer if t.name in names]

    proj_value = helper.make_tensor_value_info(PROJECTION, TensorProto.FLOAT, ["N", dim])
    image_value = next(i for i in g.input if i.name == image_input)
    projector = helper.make_graph(chain, "head_image", [image_value], [proj_value],
                                  used(chain))
    rest_inputs = [proj_value] + [i for i in g.input if i.name != image_input]
    rest = helper.make_graph(rest_nodes, "head_rest", rest_inputs, list(g.output),
                             used(rest_nodes))
    for graph, name in ((projector, PROJECTOR_FILE), (rest, REST_FILE)):
        m = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        onnx.checker.check_model(m)
        onnx.save(m, str(out_dir / name))
    return {"file": PROJECTOR_FILE, "output": PROJECTION, "dim": dim,
            "rest": {"file": REST_FILE, "input": PROJECTION}}


def check_split(head_path: Path, out_dir: Path, feeds: dict[str, np.ndarray], image_input: str) -> float:
    """Max |rest(projector(image), …) − head(image, …)| over every output, for one batch of real inputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1

    def session(p: Path):
        return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])

    full = session(head_path).run(None, feeds)
    proj = session(out_dir / PROJECTOR_FILE).run(None, {image_input: feeds[image_input]})[0]
    rest_feeds = {k: v for k, v in feeds.items() if k != image_input}
    rest_feeds[PROJECTION] = proj
    parts = session(out_dir / REST_FILE).run(None, rest_feeds)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(full, parts))


def add_to_bundle(bundle: Path) -> dict:
    """Split an existing bundle's head in place and record it in its manifest (files, head, diffs)."""
    from .manifest_schema import check_manifest, sha256_file

    mpath = bundle / "manifest.json"
    manifest = json.loads(mpath.read_text())
    head = manifest["head"]
    image_input = head["inputs"]["image"]
    spec = split_head(bundle / head["file"], image_input, bundle)
    for f in (spec["file"], spec["rest"]["file"]):
        manifest["files"][f] = {"sha256": sha256_file(bundle / f), "bytes": (bundle / f).stat().st_size}
    spec["sha256"] = manifest["files"][spec["file"]]["sha256"]
    spec["rest"]["sha256"] = manifest["files"][spec["rest"]["file"]]["sha256"]
    head["image_projection"] = spec
    feeds = parity_feeds(bundle, manifest)
    diff = check_split(bundle / head["file"], bundle, feeds, image_input)
    manifest.setdefault("onnx_vs_pytorch_max_abs_diff", {})["head_split_vs_head"] = diff
    check_manifest(manifest)
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")
    return {"dim": spec["dim"], "max_abs_diff": diff}


def parity_feeds(bundle: Path, manifest: dict) -> dict[str, np.ndarray]:
    """The head inputs of the bundle's parity fixtures (expected.jsonl), OOV rows as the server feeds them."""
    names = manifest["head"]["inputs"]
    rows = [json.loads(line) for line in (bundle / manifest["parity"]["expected"]).read_text().splitlines() if line]
    items = {json.loads(line)["id"]: json.loads(line)
             for line in (bundle / manifest["parity"]["items"]).read_text().splitlines() if line}
    f32 = lambda k: np.asarray([r[k] for r in rows], dtype=np.float32)  # noqa: E731
    oov = lambda key: np.asarray([[1.0 if items.get(r["id"], {}).get(key) else 0.0] for r in rows], dtype=np.float32)  # noqa: E731
    return {names["image"]: f32("image_emb"), names["image_oov"]: oov("image_oov"),
            names["text"]: f32("text_emb"), names["text_oov"]: oov("text_oov"), names["fields"]: f32("fields_emb")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    args = ap.parse_args(argv)
    r = add_to_bundle(args.bundle)
    print(f"split {args.bundle}: image projection {r['dim']}-d, max |split - head| {r['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
