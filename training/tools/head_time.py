"""Head time per 100 items (onnxruntime, one thread), for two or more head.onnx files measured in
one interleaved run, so machine load hits them alike. Inputs: the bundle's parity inputs, tiled.

    flock /work/locks/bench.lock python -m training.tools.head_time OLD/head.onnx models/ctr-synth/head.onnx
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort


def inputs(sess: ort.InferenceSession, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        dim = i.shape[1]
        x = rng.normal(size=(batch, dim)).astype(np.float32)
        feeds[i.name] = (x > 1.2).astype(np.float32) if dim == 1 else x
    return feeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("heads", nargs="+")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=50, help="calls per round per head")
    args = ap.parse_args(argv)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sessions = [ort.InferenceSession(h, so, providers=["CPUExecutionProvider"]) for h in args.heads]
    feeds = [inputs(s, args.batch) for s in sessions]
    times: list[list[float]] = [[] for _ in sessions]
    for s, f in zip(sessions, feeds):
        for _ in range(20):
            s.run(None, f)
    for _ in range(args.rounds):
        for k, (s, f) in enumerate(zip(sessions, feeds)):
            t = time.perf_counter()
            for _ in range(args.calls):
                s.run(None, f)
            times[k].append((time.perf_counter() - t) / args.calls * 1e6)
    res = {"batch": args.batch, "load": os.getloadavg()[0], "heads": {}}
    for h, ts in zip(args.heads, times):
        res["heads"][h] = {"median_us": float(np.median(ts)), "p10_us": float(np.percentile(ts, 10)),
                           "p90_us": float(np.percentile(ts, 90))}
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
