"""A second bundle for the fleet bench's rolling deploy: models/ctr-synth copied, its image encoder
changed so that its vectors are recognisable (every output value + OFFSET, and a metadata_props
entry), the manifest's file hash, encoder hash/version and bundle version updated to match.

    python3 bench/fleet/make-bundle-b.py SRC_DIR DST_DIR

Vectors of this encoder have values near OFFSET; the reference encoder's are near 0. A vector stored
under one encoder's version but computed by the other is therefore told apart by its first value.
"""
import hashlib
import json
import shutil
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

OFFSET = 100.0


def main(src: str, dst: str) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    manifest_path = f"{dst}/manifest.json"
    with open(manifest_path) as f:
        manifest = json.load(f)
    enc = manifest["encoders"]["image"]
    path = f"{dst}/{enc['file']}"
    model = onnx.load(path)
    out_name = enc["output"]["name"]
    raw = f"{out_name}_before_fleet_offset"
    for node in model.graph.node:
        node.output[:] = [raw if o == out_name else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(OFFSET, dtype=np.float32), "fleet_offset"))
    model.graph.node.append(helper.make_node("Add", [raw, "fleet_offset"], [out_name], name="fleet_offset_add"))
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "ctrserve_fleet_bench": "bundle-b (+100 offset)"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    manifest["files"][enc["file"]] = {**manifest["files"][enc["file"]], "sha256": digest, "bytes": len(data)}
    enc["sha256"] = digest
    enc["version"] = digest[:16]
    manifest["version"] = f"{manifest['version']}-fleet-b"
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps({"dir": dst, "image_version": enc["version"], "bundle_version": manifest["version"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
