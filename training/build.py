"""One command: generate data, train, export, calibrate, evaluate, write the bundle.

    python -m training.build --out models/ctr-synth [--small]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import evaluate as ev
from . import mdn, synth
from .config import (BISECT_ITERS, BISECT_SPAN, FIELDS, FULL, GH_NODES, IMAGE_DIM, IMAGE_MEAN,
                     IMAGE_SIZE, IMAGE_STD, MDN_K, QUANTILES, SMALL, SMALL_TRAIN, TEXT_DIM,
                     TEXT_MAX_LEN, DataConfig, TrainConfig)
from .encoders import ImageEncoder, decode_image, encode_images, normalize, pixels_sha256
from .export import export_head, export_image_encoder, export_text_encoder, max_abs_diff
from .features import Featurizer, fields_emb_numpy, fit_edges
from .hashing import hash_row
from .manifest_schema import check_manifest
from .tokenizer import encode, load_tokenizer, pad_batch, save_tokenizer, train_tokenizer
from .train import CTRModel, Data, fit_spread_tau, predict, train

T0 = time.time()
VERSION = "1.0.0"


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------ data

def cache_key(dcfg: DataConfig) -> str:
    """Cached images/features are valid for one generator source + data config."""
    src = (Path(__file__).parent / "synth.py").read_bytes() + repr(dcfg).encode()
    return hashlib.sha256(src).hexdigest()[:12]


def prepare(dcfg: DataConfig, work: Path, pretrained: bool):
    log(f"generating {dcfg.n_items} items, {dcfg.n_rows} rows (seed {dcfg.seed})")
    world, items, rows = synth.generate(dcfg)
    split = synth.split_items(dcfg, len(items))
    img_dir = work / f"images_{cache_key(dcfg)}"
    img_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((len(items), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(len(items)):
        p = img_dir / f"{items.ids[i]}.jpg"
        if not p.exists():
            synth.save_jpeg(synth.draw_image(items, i), p)
        pixels[i] = decode_image(p)  # exactly the server's decode path
    log(f"images drawn + decoded ({len(items)})")
    enc = ImageEncoder(pretrained=pretrained)
    feats_path = work / f"image_feats_{cache_key(dcfg)}_{int(pretrained)}.npy"
    if feats_path.exists():
        feats = np.load(feats_path)
    else:
        t = time.time()
        feats = encode_images(enc, pixels)
        np.save(feats_path, feats)
        log(f"image features {feats.shape} in {time.time() - t:.0f}s")
    return world, items, rows, split, pixels, enc, feats


def row_split(split: np.ndarray, item: np.ndarray, seen_share: float = 0.08, seed: int = 5) -> np.ndarray:
    """Per-row split: the item split, except that a share of the training items' rows is held out
    as split 4 ("seen items, new rows"), the regime a server mostly scores in."""
    r = split[item].copy()
    u = np.random.default_rng(seed).random(len(item))
    r[(r == 0) & (u < seen_share)] = 4
    return r


def build_data(items, rows, split, feats, tok, feat: Featurizer, item_recs, ctx_recs) -> Data:
    seqs = encode(tok, items.titles)
    ids, mask = pad_batch(seqs)
    i_fields = feat.scope_arrays(item_recs, "item")
    r_fields = feat.scope_arrays(ctx_recs, "context")
    T = torch.from_numpy
    return Data(
        i_img=T(feats), i_ids=T(ids), i_mask=T(mask),
        i_has_title=torch.tensor([len(s) > 0 for s in seqs]),
        i_fields={k: T(v) for k, v in i_fields.items()},
        r_item=T(rows.item), r_fields={k: T(v) for k, v in r_fields.items()},
        r_n=T(rows.impressions), r_c=T(rows.clicks), r_split=T(row_split(split, rows.item)),
    )


# ---------------------------------------------------------------------------------- bundle

def hash_vectors(feat: Featurizer) -> list[dict]:
    vals = ["p42", "pub0001", "cat07", "tag123", "en", "mobile", "US", "site07", "seg3", "a",
            "é", "café", "naïve", "日本語", "東京", "🚀", "🔥🔥", "👩‍💻", "Ω≈ç√", " ", "  ", "\t",
            "0", "-1", "null", "NaN", "a" * 200, "mixed Case", "ünïcödé ✓", "\u00a0", "tag\u0000x", ""]
    out = []
    cats = [f for f in FIELDS if f.type == "categorical"]
    for i, v in enumerate(vals):
        for f in (cats[i % len(cats)], cats[(i + 3) % len(cats)]):
            out.append({"field": f.name, "value": v, "row": hash_row(v, f.seed, f.rows)})
    return out


def pick_parity(rng, items, split, n: int) -> list[int]:
    test = np.flatnonzero(split == 2)
    return sorted(rng.choice(test, size=min(n, len(test)), replace=False).tolist())


def perturb(rng, item: dict, context: dict) -> tuple[dict, dict, str]:
    """Edge cases the server must handle identically: missing/empty/unicode values."""
    item = json.loads(json.dumps(item))
    context = json.loads(json.dumps(context))
    kind = rng.integers(0, 6)
    if kind == 0:
        item["categorical"]["tags"] = []
        return item, context, "empty tags"
    if kind == 1:
        del item["numeric"]["age_hours"]
        context["numeric"] = {}
        return item, context, "missing numeric"
    if kind == 2:
        item["categorical"]["publisher"] = "éditions 日本 🚀"
        return item, context, "unicode publisher"
    if kind == 3:
        del context["categorical"]["device"]
        item["categorical"]["language"] = ""
        return item, context, "missing/empty categorical"
    if kind == 4:
        item["categorical"]["tags"] = ["tag001", "tag001", "tag999"]
        return item, context, "duplicate + unseen tags"
    item["numeric"]["age_hours"] = 1e9
    item["numeric"]["hist_ctr"] = -1.0
    return item, context, "out-of-range numeric"


@torch.no_grad()
def make_parity(bundle: Path, model: CTRModel, enc: ImageEncoder, tok, feat: Featurizer, tables,
                items, split, world, img_dir: Path, calib, n: int, seed: int):
    rng = np.random.default_rng(seed)
    pdir = bundle / "parity"
    (pdir / "images").mkdir(parents=True, exist_ok=True)
    idx = pick_parity(rng, items, split, n)
    ctxs = synth.make_contexts(len(idx), seed + 1, world)
    recs, exp = [], []
    oov_img = model.oov_image.detach().numpy().astype(np.float32)
    oov_txt = model.oov_text.detach().numpy().astype(np.float32)
    img_emb, txt_emb, fld_emb, ids_list, shas = [], [], [], [], []
    for j, i in enumerate(idx):
        iid = items.ids[i]
        shutil.copyfile(img_dir / f"{iid}.jpg", pdir / "images" / f"{iid}.jpg")
        item = items.record(i, f"https://images.invalid/{iid}.jpg")
        context = ctxs.record(j)
        u = rng.random()
        image_oov = bool(u < 0.2)
        text_oov = bool(0.15 < u < 0.35)
        note = None
        if rng.random() < 0.05:
            item["title"] = ""  # absent title -> OOV
            text_oov = True
            note = "empty title"
        if rng.random() < 0.12:
            item, context, note = perturb(rng, item, context)
        px = decode_image(pdir / "images" / f"{iid}.jpg")
        shas.append(pixels_sha256(px))
        e_img = oov_img if image_oov else enc(torch.from_numpy(normalize(px[None]))).numpy()[0]
        seq = encode(tok, [item["title"]])[0] if item.get("title") else []
        if not seq:
            text_oov = True
        if text_oov:
            e_txt = oov_txt
        else:
            a, m = pad_batch([seq])
            e_txt = model.text(torch.from_numpy(a), torch.from_numpy(m)).numpy()[0]
        rows = feat.record_rows(item, context)
        img_emb.append(e_img)
        txt_emb.append(e_txt)
        fld_emb.append(fields_emb_numpy(FIELDS, tables, rows))
        ids_list.append(seq)
        r = {"id": iid, "context": context, "item": item, "image_file": f"parity/images/{iid}.jpg",
             "image_oov": image_oov, "text_oov": text_oov}
        if note:
            r["note"] = note
        recs.append(r)
    n_ = len(idx)
    io = np.array([[float(r["image_oov"])] for r in recs], np.float32)
    to = np.array([[float(r["text_oov"])] for r in recs], np.float32)
    head_in = [np.stack(img_emb).astype(np.float32), io, np.stack(txt_emb).astype(np.float32), to,
               np.stack(fld_emb).astype(np.float32)]
    pi, mu, sigma = (t.numpy() for t in model.head(*[torch.from_numpy(a) for a in head_in]))
    raw, std = mdn.moments(pi, mu, sigma)
    qs = {k: mdn.quantile(q, pi, mu, sigma) for k, q in QUANTILES.items()}
    mean = mdn.calibrate(raw, calib[0], calib[1])
    f64 = lambda a: [float(v) for v in np.asarray(a, np.float32).ravel()]  # noqa: E731
    for j in range(n_):
        exp.append({"id": recs[j]["id"], "pixels_sha256": shas[j], "input_ids": ids_list[j],
                    "image_emb": f64(head_in[0][j]), "text_emb": f64(head_in[2][j]),
                    "fields_emb": f64(head_in[4][j]), "pi": f64(pi[j]), "mu": f64(mu[j]),
                    "sigma": f64(sigma[j]), "raw_mean": float(raw[j]), "std": float(std[j]),
                    "quantiles": {k: float(v[j]) for k, v in qs.items()}, "mean": float(mean[j])})
    write_jsonl(pdir / "items.jsonl", recs)
    write_jsonl(pdir / "expected.jsonl", exp)
    log(f"parity fixtures: {n_} items ({int(io.sum())} image OOV, {int(to.sum())} text OOV)")
    return head_in


def write_sample(out: Path, items, world, img_dir: Path, n_items: int, n_ctx: int, seed: int) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(items), size=min(n_items, len(items)), replace=False).tolist())
    for i in idx:
        shutil.copyfile(img_dir / f"{items.ids[i]}.jpg", tmp / "images" / f"{items.ids[i]}.jpg")
    write_jsonl(tmp / "items.jsonl", [items.record(i, f"images/{items.ids[i]}.jpg") for i in idx])
    ctxs = synth.make_contexts(n_ctx, seed + 1, world)
    write_jsonl(tmp / "contexts.jsonl", [ctxs.record(j) for j in range(n_ctx)])
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    log(f"sample: {len(idx)} items, {n_ctx} contexts -> {out}")


def swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` with `tmp` so a reader never sees a half-written bundle (READY is last)."""
    (out / "READY").unlink(missing_ok=True)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    (out / "READY").write_text(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")


# ------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="ctr-synth", help="bundle name written to the manifest")
    ap.add_argument("--small", action="store_true", help="tiny data, short training, random CNN weights")
    ap.add_argument("--work", type=Path, default=None, help="cache dir (images, features)")
    ap.add_argument("--sample-out", type=Path, default=None, help="write the committed sample here")
    ap.add_argument("--parity", type=int, default=None)
    ap.add_argument("--epochs-joint", type=int, default=None)
    ap.add_argument("--epochs-head", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest for these small ops, and far faster on a busy machine")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dcfg = SMALL if args.small else FULL
    tcfg = SMALL_TRAIN if args.small else TrainConfig()
    if args.epochs_joint is not None:
        tcfg.epochs_joint = args.epochs_joint
    if args.epochs_head is not None:
        tcfg.epochs_head = args.epochs_head
    n_parity = args.parity or (40 if args.small else 200)
    work = args.work or Path(__file__).resolve().parent / ".cache" / ("small" if args.small else "full")
    out = args.out.resolve()
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    world, items, rows, split, pixels, enc, feats = prepare(dcfg, work, pretrained=not args.small)
    train_items = np.flatnonzero(split == 0)
    tok = train_tokenizer([items.titles[i] for i in train_items])
    save_tokenizer(tok, tmp / "tokenizer")
    tok = load_tokenizer(tmp / "tokenizer")  # use exactly the saved file from here on
    log(f"tokenizer: vocab {tok.get_vocab_size()}")

    item_recs = [items.record(i, "") for i in range(len(items))]
    ctx_recs = [rows.ctx.record(j) for j in range(len(rows.item))]
    tr_rows = np.flatnonzero(split[rows.item] == 0)
    edges = fit_edges([item_recs[i] for i in train_items], [ctx_recs[j] for j in tr_rows[:50_000]])
    feat = Featurizer(FIELDS, edges)
    data = build_data(items, rows, split, feats, tok, feat, item_recs, ctx_recs)
    img_mean = feats[train_items].mean(0)
    img_std = np.maximum(feats[train_items].std(0), 0.05)
    model = CTRModel(tok.get_vocab_size(), feat.table_rows, img_mean, img_std)
    train(model, data, tcfg, log, seed=dcfg.seed % 1000)

    # ---- spread temperature + isotonic calibration on the held-out calibration split
    va = torch.nonzero(data.r_split == 1).squeeze(1)
    tau = fit_spread_tau(model, data, va, log)
    pi, mu, sg = predict(model, data, va)
    raw_va, _ = mdn.moments(pi, mu, sg)
    cx, cy = ev.fit_isotonic(raw_va, rows.clicks[va.numpy()], rows.impressions[va.numpy()])
    log(f"isotonic calibration: {len(cx)} knots")

    # ---- export
    tables = model.tables.export_arrays()
    (tmp / "tables").mkdir()
    for name, arr in tables.items():
        arr.astype("<f4").tofile(tmp / "tables" / f"{name}.f32")
    (tmp / "oov").mkdir()
    oov_img = model.oov_image.detach().numpy().astype("<f4")
    oov_txt = model.oov_text.detach().numpy().astype("<f4")
    oov_img.tofile(tmp / "oov" / "image.f32")
    oov_txt.tofile(tmp / "oov" / "text.f32")

    diffs = {}
    sample_px = normalize(pixels[np.flatnonzero(split == 2)[:16]])
    export_image_encoder(enc, tmp / "image_encoder.onnx", sample_px)
    diffs["image_encoder"] = max(max_abs_diff(enc, tmp / "image_encoder.onnx", {"pixels": sample_px[:b]})
                                 for b in (1, 5, 16))
    seqs = encode(tok, [items.titles[i] for i in np.flatnonzero(split == 2)[:64]])
    ids, mask = pad_batch(seqs)
    export_text_encoder(model.text, tmp / "text_encoder.onnx", ids, mask)
    td = []
    for b, extra in ((1, 0), (7, 3), (64, 0), (64, 9)):
        s_ids, s_mask = pad_batch(seqs[:b])
        if extra:
            s_ids = np.pad(s_ids, ((0, 0), (0, extra)))
            s_mask = np.pad(s_mask, ((0, 0), (0, extra)))
        td.append(max_abs_diff(model.text, tmp / "text_encoder.onnx", {"input_ids": s_ids, "attention_mask": s_mask}))
    diffs["text_encoder"] = max(td)

    head_in = make_parity(tmp, model, enc, tok, feat, tables, items, split, world, work / f"images_{cache_key(dcfg)}",
                          (cx, cy), n_parity, dcfg.seed + 11)
    export_head(model.head, tmp / "head.onnx", head_in)
    names = ["image_emb", "image_oov", "text_emb", "text_oov", "fields_emb"]
    diffs["head"] = max(max_abs_diff(model.head, tmp / "head.onnx", {k: v[:b] for k, v in zip(names, head_in)})
                        for b in (1, 3, len(head_in[0])))
    log("onnx vs pytorch max abs diff: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))

    # ---- evaluation report
    from .report import run_report
    report = run_report(tmp / "report", model, data, rows, items, split, feat, (cx, cy), diffs, log)

    # ---- sample for the TypeScript side
    if args.sample_out:
        write_sample(args.sample_out.resolve(), items, world, work / f"images_{cache_key(dcfg)}",
                     150 if args.small else 1500, 30 if args.small else 200, dcfg.seed + 21)

    # ---- manifest
    gh_x, gh_w = mdn.gauss_hermite(GH_NODES)
    img_sha = sha256_file(tmp / "image_encoder.onnx")
    txt_sha = sha256_file(tmp / "text_encoder.onnx")
    fields = []
    for f in FIELDS:
        e = {"name": f.name, "scope": f.scope, "type": f.type, "multi": f.multi}
        if f.type == "categorical":
            e["hash"] = {"algo": "murmur3_x86_32", "seed": f.seed}
        else:
            e["edges"] = edges[f.name]
        e.update({"rows": feat.rows_of(f), "dim": f.dim, "table": f"tables/{f.name}.f32"})
        fields.append(e)
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            rel = p.relative_to(tmp).as_posix()
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {
        "format": 1, "name": args.name, "version": VERSION,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
        "encoders": {
            "image": {"file": "image_encoder.onnx", "sha256": img_sha, "version": img_sha[:16],
                      "arch": "efficientnet-lite0 (ImageNet, frozen, global average pool)",
                      "input": {"name": "pixels", "layout": "NCHW", "dtype": "float32",
                                "height": IMAGE_SIZE, "width": IMAGE_SIZE, "channel_order": "RGB",
                                "resize": {"fit": "fill", "kernel": "lanczos3"},
                                "background": [255, 255, 255], "mean": IMAGE_MEAN, "std": IMAGE_STD},
                      "output": {"name": "embedding", "dim": IMAGE_DIM}},
            "text": {"file": "text_encoder.onnx", "sha256": txt_sha, "version": txt_sha[:16],
                     "arch": "embedding + unidirectional LSTM + structured self-attention (Lin et al. 2017)",
                     "tokenizer_dir": "tokenizer", "max_length": TEXT_MAX_LEN, "pad_id": 0,
                     "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
                     "output": {"name": "embedding", "dim": TEXT_DIM}},
        },
        "head": {"file": "head.onnx", "sha256": sha256_file(tmp / "head.onnx"),
                 "inputs": {"image": "image_emb", "image_oov": "image_oov", "text": "text_emb",
                            "text_oov": "text_oov", "fields": "fields_emb"},
                 "outputs": {"pi": "pi", "mu": "mu", "sigma": "sigma"}},
        "oov": {"image": {"file": "oov/image.f32", "dim": IMAGE_DIM},
                "text": {"file": "oov/text.f32", "dim": TEXT_DIM}},
        "fields": fields,
        "hash_test_vectors": hash_vectors(feat),
        "mdn": {"k": MDN_K, "gauss_hermite": {"nodes": [float(v) for v in gh_x], "weights": [float(v) for v in gh_w]},
                "quantiles": QUANTILES,
                "bisection": {"iterations": BISECT_ITERS, "span_sigmas": BISECT_SPAN}},
        "calibration": {"x": cx, "y": cy},
        "parity": {"dir": "parity", "items": "parity/items.jsonl", "expected": "parity/expected.jsonl"},
        "report": "report/report.md",
        "onnx_vs_pytorch_max_abs_diff": diffs,
    }
    check_manifest(manifest)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    total = sum(v["bytes"] for v in files.values())
    swap_in(tmp, out)
    log(f"bundle written to {out} ({total / 1e6:.1f} MB); build took {time.time() - T0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
