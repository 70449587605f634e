"""Ablations of the model on one log: each variant trained from the same seed on the same split,
scored on the held-out items (AUC, calibrated ECE, 90 % coverage, and the Bayes predictor's AUC
when the rows carry oracle columns). Prints one JSON line per variant.

    python -m training.tools.ablate --variants base,interact [--data rows.jsonl --fields fields.json]
        [--train-share 0.5] [--epochs-joint 4 --epochs-head 4]

Without --data it uses the synthetic world's rows, exactly as `training.build` does.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import build as B
from .. import evaluate as ev
from .. import mdn
from ..config import FULL, IMAGE_DIM, TrainConfig
from ..encoders import ImageEncoder
from ..features import Featurizer, fit_edges
from ..images import ImageFetcher
from ..tokenizer import train_tokenizer
from ..train import CTRModel, fit_spread_tau, predict, train

# name -> (head options, training overrides). "base" is the model as built (1.0.0 and 1.1.0 alike).
VARIANTS: dict[str, tuple[dict, dict]] = {
    "base": ({}, {}),
    "interact": ({"interact": 32}, {}),
    "ema": ({}, {"ema": 0.997}),
}


def prepare(args):
    work = args.work or Path(B.__file__).resolve().parent / ".cache" / "full"
    args.small = False
    if (args.n_rows or args.n_items) and args.data is None:
        # Another draw of the synthetic world: more rows (same items and images), or more items.
        over = {k: v for k, v in (("n_rows", args.n_rows), ("n_items", args.n_items)) if v}
        args.data = B.synth_rows(dataclasses.replace(FULL, **over), work)
        args.fields = args.fields or args.data.parent / "fields.json"  # the world's own spec, as the build uses
    data, fields, image_root = B.load_inputs(args, work)
    split = B.row_split(data, "item")
    fetcher = ImageFetcher(image_root, work / "image_cache")
    pixels, has_img, files = fetcher.load([it.get("image_url") for it in data.items], B.log)
    feats = B.image_features(ImageEncoder(pretrained=True), pixels, has_img, files, work, pretrained=True)
    tr_rows = np.flatnonzero(split == B.TRAIN)
    if args.train_share < 1:  # fewer training rows; held-out rows unchanged
        drop = np.random.default_rng(3).random(len(tr_rows)) >= args.train_share
        split[tr_rows[drop]] = -1
        tr_rows = tr_rows[~drop]
    train_items = np.unique(data.item[tr_rows])
    tok = train_tokenizer(B.titles_at(data, train_items))
    edges = fit_edges(fields, [data.items[i] for i in train_items], [data.contexts[j] for j in tr_rows[:50_000]])
    feat = Featurizer(fields, edges)
    tensors = B.build_data(data, split, feats, has_img, tok, feat)
    img_items = train_items[has_img[train_items]]
    stats = (feats[img_items].mean(0), np.maximum(feats[img_items].std(0), 0.05)) if len(img_items) else \
        (np.zeros(IMAGE_DIM, np.float32), np.ones(IMAGE_DIM, np.float32))
    return data, fields, feat, tok, tensors, stats


def score(model, tensors, data, calib, sid: int, dump: Path | None = None) -> dict:
    rows = torch.nonzero(tensors.r_split == sid).squeeze(1)
    ti = rows.numpy()
    c, n = data.clicks[ti].astype(np.float64), data.impressions[ti].astype(np.float64)
    pi, mu, sg = predict(model, tensors, rows)
    raw, _ = mdn.moments(pi, mu, sg)
    if dump is not None:  # per-row predictions, for error analysis against the oracle
        np.savez(dump, rows=ti, raw=raw, pi=pi, mu=mu, sigma=sg)
    cal = mdn.calibrate(raw, *calib)
    out = {"auc": ev.auc(raw, c, n), "ece_raw": ev.ece_equal_mass(raw, c, n), "ece_cal": ev.ece_equal_mass(cal, c, n),
           "nll": ev.nll_mixture(pi, mu, sg, c, n)}
    if data.oracle is not None:
        m, s, z = (data.oracle[k][ti] for k in ("m", "s", "z"))
        ones = np.ones((len(ti), 1))
        bayes, _ = mdn.moments(ones, m[:, None], s[:, None])
        p_star = 1 / (1 + np.exp(-z))
        lo, hi = mdn.quantile(0.05, pi, mu, sg), mdn.quantile(0.95, pi, mu, sg)
        out.update({"bayes_auc": ev.auc(bayes, c, n), "cov90": float(np.mean((p_star >= lo) & (p_star <= hi)))})
        out["gap"] = out["bayes_auc"] - out["auc"]
    return out


def run(name: str, args, prepared) -> dict:
    data, fields, feat, tok, tensors, (img_mean, img_std) = prepared
    head_opts, over = VARIANTS[name]
    cfg = TrainConfig(epochs_joint=args.epochs_joint, epochs_head=args.epochs_head)
    for k, v in over.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    t0 = time.process_time()
    model = CTRModel(tok.get_vocab_size(), fields, feat.table_rows, img_mean, img_std, **head_opts)
    train(model, tensors, cfg, B.log, seed=7)
    va = torch.nonzero(tensors.r_split == B.CALIB).squeeze(1)
    tau = fit_spread_tau(model, tensors, va, B.log)
    pi, mu, sg = predict(model, tensors, va)
    raw_va, _ = mdn.moments(pi, mu, sg)
    calib = ev.fit_isotonic(raw_va, data.clicks[va.numpy()], data.impressions[va.numpy()])
    dump = args.dump / f"{name}-test.npz" if args.dump else None
    return {"variant": name, "head": head_opts, "train": over, "epochs": [cfg.epochs_joint, cfg.epochs_head],
            "train_share": args.train_share, "n_rows": len(data), "fields": str(args.fields or ""), "tau": tau,
            "cpu_s": round(time.process_time() - t0),
            "test": score(model, tensors, data, calib, B.TEST, dump), "seen": score(model, tensors, data, calib, B.SEEN)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="base,interact")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--fields", type=Path, default=None)
    ap.add_argument("--image-root", type=Path, default=None)
    ap.add_argument("--max-invalid", type=float, default=0.0)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--n-rows", type=int, default=None, help="synthetic rows to draw (default: the build's)")
    ap.add_argument("--n-items", type=int, default=None, help="synthetic items to draw (default: the build's)")
    ap.add_argument("--train-share", type=float, default=1.0)
    ap.add_argument("--epochs-joint", type=int, default=TrainConfig.epochs_joint)
    ap.add_argument("--epochs-head", type=int, default=TrainConfig.epochs_head)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dump", type=Path, default=None, help="folder for per-row test predictions")
    ap.add_argument("--out", type=Path, default=None, help="append each result as a JSON line")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prepared = prepare(args)
    for name in args.variants.split(","):
        res = run(name, args, prepared)
        line = json.dumps(res)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
