"""PIL vs sharp/libvips decode of the same JPEGs: python -m training.tools.compare_decoders <dir>"""
import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from training.encoders import decode_image


def main(folder: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vips.json"
        subprocess.run(["node", str(Path(__file__).with_name("compare_decoders.mjs")), folder, str(out)], check=True)
        vips = json.loads(out.read_text())
    diffs = []
    for f, v in sorted(vips.items()):
        a = np.frombuffer(base64.b64decode(v["b64"]), np.uint8).reshape(v["h"], v["w"], v["c"])
        diffs.append(np.abs(a.astype(int) - decode_image(Path(folder) / f).astype(int)))
    d = np.stack(diffs)
    print(json.dumps({"images": len(diffs), "identical": int(sum(x.max() == 0 for x in diffs)),
                      "max_abs_px_diff": int(d.max()), "mean_abs_px_diff": float(d.mean())}))


if __name__ == "__main__":
    main(sys.argv[1])
