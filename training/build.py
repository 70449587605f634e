"""One command: rows in, bundle out (train, export, calibrate, evaluate, write the bundle).

    python -m training.build --data rows.jsonl --fields fields.json --out models/my-model [--image-root DIR]
    python -m training.build --out models/ctr-synth [--small]      # the synthetic world, same path

Without `--data` the synthetic generator writes its world as rows first (`training.synth`), and the
build reads them like any user's log.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.utils import murmurhash3_32

from . import evaluate as ev
from . import mdn, synth
from .config import (BISECT_ITERS, BISECT_SPAN, FULL, GH_NODES, IMAGE_DIM, IMAGE_MEAN,
                     IMAGE_SIZE, IMAGE_STD, MDN_K, QUANTILES, SMALL, SMALL_TRAIN, TEXT_DIM,
                     TEXT_MAX_LEN, DataConfig, TrainConfig)
from .encoders import ImageEncoder, decode_image, encode_images, normalize, pixels_sha256
from .export import export_head, export_image_encoder, export_text_encoder, max_abs_diff
from .head_split import CannotSplit, check_split, split_head
from .features import Featurizer, fields_emb_numpy, fit_edges
from .fields import FieldSpec, infer_spec, load_spec
from .hashing import hash_row
from .images import ImageFetcher, content_key
from .manifest_schema import check_manifest, sha256_file
from .rows import Log, read_log
from .tokenizer import encode, load_tokenizer, pad_batch, save_tokenizer, train_tokenizer
from .train import CTRModel, Data, fit_spread_tau, predict, train

T0 = time.time()
VERSION = "1.4.1"


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------ data

SPLIT_SHARES = (0.76, 0.06, 0.09, 0.09)  # train / validation / calibration / test
TRAIN, CALIB, TEST, VALID, SEEN = 0, 1, 2, 3, 4


def synth_rows(dcfg: DataConfig, work: Path) -> Path:
    """The synthetic world as rows on disk (reused while the generator and its config are unchanged)."""
    key = hashlib.sha256((Path(__file__).parent / "synth.py").read_bytes() + repr(dcfg).encode()).hexdigest()[:12]
    out = work / f"synth_{key}"
    if not (out / "rows.jsonl").exists():
        synth.write_world(dcfg, out, log)
    return out / "rows.jsonl"


def _unit(key: str, seed: int) -> float:
    return murmurhash3_32(key, seed=seed, positive=True) / 2 ** 32


def row_split(data: Log, how: str, seed: int = 5, seen_share: float = 0.08) -> np.ndarray:
    """Per-row split codes: 0 train, 3 validation (early stopping), 1 calibration, 2 test, and for
    `item` also 4 = a share of the training items' rows held out ("seen items, new rows").
    `item`: by item id (test items are unseen); `time`: by timestamp (the latest rows are test);
    `random`: by row."""
    a, b, c, _ = np.cumsum(SPLIT_SHARES)
    n = len(data)
    if how == "item":
        u_item = np.array([_unit(it["id"], seed) for it in data.items])
        u = u_item[data.item]
    elif how == "time":
        if data.timestamp is None or np.isnan(data.timestamp).any():
            raise ValueError("--split time needs a timestamp on every row")
        u = np.empty(n)
        u[np.argsort(data.timestamp, kind="stable")] = (np.arange(n) + 0.5) / n
    elif how == "random":
        u = np.random.default_rng(seed).random(n)
    else:
        raise ValueError(f"unknown split {how!r}")
    split = np.where(u < a, TRAIN, np.where(u < b, VALID, np.where(u < c, CALIB, TEST)))
    if how == "item":
        v = np.random.default_rng(seed + 1).random(n)
        split[(split == TRAIN) & (v < seen_share)] = SEEN
    return split


def image_features(enc: ImageEncoder, pixels: np.ndarray, has: np.ndarray, files, work: Path, pretrained: bool):
    path = work / f"image_feats_{content_key(files)}_{int(pretrained)}.npy"
    if path.exists():
        return np.load(path)
    t = time.time()
    feats = np.zeros((len(pixels), IMAGE_DIM), np.float32)
    idx = np.flatnonzero(has)
    # In chunks: `pixels[idx]` whole would copy every image once more (4.7 GB at 96 000 items; a
    # 96 000-item, 5.76 M-row build was killed by the kernel at 22 GB RSS here).
    for i in range(0, len(idx), 4096):
        part = idx[i:i + 4096]
        feats[part] = encode_images(enc, pixels[part])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    log(f"image features {feats.shape} in {time.time() - t:.0f}s")
    return feats


def titles_at(data: Log, items) -> list[str]:
    """The titles of some items (not `titles_of(data)[i]` in a loop: that is quadratic in items)."""
    return [data.items[i].get("title") or "" for i in items]


def titles_of(data: Log) -> list[str]:
    return titles_at(data, range(len(data.items)))


def build_data(data: Log, split: np.ndarray, feats, has_img, tok, feat: Featurizer) -> Data:
    seqs = encode(tok, titles_of(data))
    ids, mask = pad_batch(seqs)
    i_fields = feat.scope_arrays(data.items, "item")
    r_fields = feat.scope_arrays(data.contexts, "context")
    T = torch.from_numpy
    return Data(
        i_img=T(feats), i_ids=T(ids), i_mask=T(mask),
        i_has_title=torch.tensor([len(s) > 0 for s in seqs]), i_has_image=T(has_img),
        i_fields={k: T(v) for k, v in i_fields.items()},
        r_item=T(data.item), r_fields={k: T(v) for k, v in r_fields.items()},
        r_n=T(data.impressions), r_c=T(data.clicks), r_split=T(split),
    )


# ---------------------------------------------------------------------------------- bundle

HASH_TEST_VALUES = ["p42", "pub0001", "cat07", "tag123", "en", "mobile", "US", "site07", "seg3", "a",
                    "é", "café", "naïve", "日本語", "東京", "🚀", "🔥🔥", "👩‍💻", "Ω≈ç√", " ", "  ", "\t",
                    "0", "-1", "null", "NaN", "a" * 200, "mixed Case", "ünïcödé ✓", "\u00a0", "tag\u0000x", ""]


def hash_vectors(fields: list[FieldSpec]) -> list[dict]:
    out = []
    cats = [f for f in fields if f.type == "categorical"]
    if not cats:
        return out
    for i, v in enumerate(HASH_TEST_VALUES):
        for f in {cats[i % len(cats)].name: cats[i % len(cats)], cats[(i + 3) % len(cats)].name: cats[(i + 3) % len(cats)]}.values():
            out.append({"field": f.name, "value": v, "row": hash_row(v, f.seed, f.rows)})
    return out


def pick_parity(rng, data: Log, split: np.ndarray, has_img: np.ndarray, n: int) -> list[tuple[int, int]]:
    """(item, row) pairs: distinct test items with an image, each with the context of one of its rows."""
    test_rows = np.flatnonzero(split == TEST)
    test_rows = test_rows[rng.permutation(len(test_rows))]
    chosen: dict[int, int] = {}
    for r in test_rows:
        i = int(data.item[r])
        if has_img[i] and i not in chosen:
            chosen[i] = int(r)
            if len(chosen) == n:
                break
    return sorted(chosen.items())


def _first(fields: list[FieldSpec], **want) -> FieldSpec | None:
    return next((f for f in fields if all(getattr(f, k) == v for k, v in want.items())), None)


def perturb(rng, fields: list[FieldSpec], item: dict, context: dict) -> tuple[dict, dict, str | None]:
    """Edge cases the server must handle identically (missing/empty/unicode/duplicate/out-of-range
    values), applied to whichever declared fields have the right kind."""
    item = json.loads(json.dumps(item))
    context = json.loads(json.dumps(context))
    sect = lambda rec, f: rec.setdefault("categorical" if f.type == "categorical" else "numeric", {})  # noqa: E731
    kind = int(rng.integers(0, 6))
    multi = _first(fields, scope="item", type="categorical", multi=True)
    cat = _first(fields, scope="item", type="categorical", multi=False)
    num = _first(fields, scope="item", type="numeric")
    ctx_cat = _first(fields, scope="context", type="categorical")
    if kind == 0 and multi:
        sect(item, multi)[multi.name] = []
        return item, context, "empty multi-valued field"
    if kind == 1 and num:
        sect(item, num).pop(num.name, None)
        context["numeric"] = {}
        return item, context, "missing numeric"
    if kind == 2 and cat:
        sect(item, cat)[cat.name] = "éditions 日本 🚀"
        return item, context, "unicode categorical"
    if kind == 3 and ctx_cat and cat:
        sect(context, ctx_cat).pop(ctx_cat.name, None)
        sect(item, cat)[cat.name] = ""
        return item, context, "missing/empty categorical"
    if kind == 4 and multi:
        vals = sect(item, multi).get(multi.name) or ["x"]
        sect(item, multi)[multi.name] = [vals[0], vals[0], "zz-never-seen"]
        return item, context, "duplicate + unseen values"
    if kind == 5 and num:
        sect(item, num)[num.name] = 1e9
        return item, context, "out-of-range numeric"
    return item, context, None


def _file_name(iid: str, i: int, src: Path) -> str:
    stem = iid if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", iid) else f"item{i:06d}"
    return stem + (src.suffix.lower() if src.suffix else ".img")


@torch.no_grad()
def make_parity(bundle: Path, model: CTRModel, enc: ImageEncoder, tok, feat: Featurizer, tables,
                data: Log, split, has_img, files, calib, n: int, seed: int):
    rng = np.random.default_rng(seed)
    pdir = bundle / "parity"
    (pdir / "images").mkdir(parents=True, exist_ok=True)
    picks = pick_parity(rng, data, split, has_img, n)
    recs, exp = [], []
    oov_img = model.oov_image.detach().numpy().astype(np.float32)
    oov_txt = model.oov_text.detach().numpy().astype(np.float32)
    img_emb, txt_emb, fld_emb, ids_list, shas = [], [], [], [], []
    for i, r in picks:
        iid = data.items[i]["id"]
        name = _file_name(iid, i, files[i])
        shutil.copyfile(files[i], pdir / "images" / name)
        item = dict(data.items[i], image_url=f"https://images.invalid/{name}")
        context = data.contexts[r]
        u = rng.random()
        image_oov = bool(u < 0.2)
        text_oov = bool(0.15 < u < 0.35)
        note = None
        if rng.random() < 0.05:
            item["title"] = ""  # absent title -> OOV
            text_oov = True
            note = "empty title"
        if rng.random() < 0.12:
            item, context, note2 = perturb(rng, feat.fields, item, context)
            note = note2 or note
        px = decode_image(pdir / "images" / name)
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
        fld_emb.append(fields_emb_numpy(feat.fields, tables, rows))
        ids_list.append(seq)
        rec = {"id": iid, "context": context, "item": item, "image_file": f"parity/images/{name}",
               "image_oov": image_oov, "text_oov": text_oov}
        if note:
            rec["note"] = note
        recs.append(rec)
    io = np.array([[float(r["image_oov"])] for r in recs], np.float32)
    to = np.array([[float(r["text_oov"])] for r in recs], np.float32)
    head_in = [np.stack(img_emb).astype(np.float32), io, np.stack(txt_emb).astype(np.float32), to,
               np.stack(fld_emb).astype(np.float32)]
    pi, mu, sigma = (t.numpy() for t in model.head(*[torch.from_numpy(a) for a in head_in]))
    raw, std = mdn.moments(pi, mu, sigma)
    qs = {k: mdn.quantile(q, pi, mu, sigma) for k, q in QUANTILES.items()}
    mean = mdn.calibrate(raw, calib[0], calib[1])
    f64 = lambda a: [float(v) for v in np.asarray(a, np.float32).ravel()]  # noqa: E731
    for j in range(len(recs)):
        exp.append({"id": recs[j]["id"], "pixels_sha256": shas[j], "input_ids": ids_list[j],
                    "image_emb": f64(head_in[0][j]), "text_emb": f64(head_in[2][j]),
                    "fields_emb": f64(head_in[4][j]), "pi": f64(pi[j]), "mu": f64(mu[j]),
                    "sigma": f64(sigma[j]), "raw_mean": float(raw[j]), "std": float(std[j]),
                    "quantiles": {k: float(v[j]) for k, v in qs.items()}, "mean": float(mean[j])})
    write_jsonl(pdir / "items.jsonl", recs)
    write_jsonl(pdir / "expected.jsonl", exp)
    log(f"parity fixtures: {len(recs)} items ({int(io.sum())} image OOV, {int(to.sum())} text OOV)")
    return head_in


def write_sample(out: Path, data: Log, has_img, files, n_items: int, n_ctx: int, seed: int) -> None:
    """Items (with their image files) and contexts of the log, for tests and benchmarks without PyTorch."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    with_img = np.flatnonzero(has_img)
    idx = sorted(rng.choice(with_img, size=min(n_items, len(with_img)), replace=False).tolist())
    recs = []
    for i in idx:
        name = _file_name(data.items[i]["id"], i, files[i])
        shutil.copyfile(files[i], tmp / "images" / name)
        recs.append(dict(data.items[i], image_url=f"images/{name}"))
    write_jsonl(tmp / "items.jsonl", recs)
    rows = rng.choice(len(data), size=min(n_ctx, len(data)), replace=False)
    write_jsonl(tmp / "contexts.jsonl", [data.contexts[r] for r in rows])
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    log(f"sample: {len(idx)} items, {len(rows)} contexts -> {out}")


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

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=None,
                    help="training rows (JSONL, or .parquet); without it, the synthetic world's rows (training.synth)")
    ap.add_argument("--fields", type=Path, default=None,
                    help="field spec (training.fields writes a starting one); default: the one beside the synthetic rows, "
                         "else inferred from --data")
    ap.add_argument("--image-root", type=Path, default=None,
                    help="folder that relative image_url paths are read from (default: the folder of --data)")
    ap.add_argument("--split", choices=["item", "time", "random"], default="item",
                    help="held-out rows: by item id (unseen items), by timestamp (latest rows), or by row")
    ap.add_argument("--max-invalid", type=float, default=0.0,
                    help="invalid rows allowed before the build stops: a share (< 1) or a count (>= 1); default none")
    ap.add_argument("--name", default=None, help="bundle name written to the manifest (default: the --out folder name)")
    ap.add_argument("--version", default=VERSION, help="bundle version written to the manifest")
    ap.add_argument("--small", action="store_true", help="short training, random CNN weights (and a small synthetic world)")
    ap.add_argument("--work", type=Path, default=None, help="cache dir (synthetic rows, fetched images, CNN features)")
    ap.add_argument("--sample-out", type=Path, default=None, help="write the committed sample here")
    ap.add_argument("--parity", type=int, default=None)
    ap.add_argument("--epochs-joint", type=int, default=None)
    ap.add_argument("--epochs-head", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest for these small ops, and far faster on a busy machine")
    return ap.parse_args(argv)


def load_inputs(args, work: Path):
    """(log, fields, image root) from --data/--fields, or from the synthetic world's rows."""
    data_path, fields_path = args.data, args.fields
    if data_path is None:
        data_path = synth_rows(SMALL if args.small else FULL, work)
        fields_path = fields_path or data_path.parent / "fields.json"
    data = read_log(data_path, max_invalid=args.max_invalid, report=sys.stdout)
    log(f"rows: {len(data)} valid of {data.lines} ({len(data.invalid)} invalid), {len(data.items)} items"
        + (", with oracle columns" if data.oracle is not None else ""))
    if fields_path is not None:
        fields = load_spec(fields_path)
    else:
        fields = infer_spec(zip(data.contexts, (data.items[i] for i in data.item)))
        log("no --fields: using a spec inferred from the data (python -m training.fields writes one to edit)")
    return data, fields, args.image_root or data_path.resolve().parent


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tcfg = SMALL_TRAIN if args.small else TrainConfig()
    if args.epochs_joint is not None:
        tcfg.epochs_joint = args.epochs_joint
    if args.epochs_head is not None:
        tcfg.epochs_head = args.epochs_head
    n_parity = args.parity or (40 if args.small else 200)
    work = args.work or Path(__file__).resolve().parent / ".cache" / ("small" if args.small else "full")
    out = args.out.resolve()
    name = args.name or out.name
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    data, fields, image_root = load_inputs(args, work)
    split = row_split(data, args.split)
    log("split rows: " + ", ".join(f"{k} {int((split == v).sum())}" for k, v in
                                   (("train", TRAIN), ("validation", VALID), ("calibration", CALIB), ("test", TEST), ("seen", SEEN))))
    fetcher = ImageFetcher(image_root, work / "image_cache")
    pixels, has_img, files = fetcher.load([it.get("image_url") for it in data.items], log)
    enc = ImageEncoder(pretrained=not args.small)
    feats = image_features(enc, pixels, has_img, files, work, pretrained=not args.small)

    tr_rows = np.flatnonzero(split == TRAIN)
    train_items = np.unique(data.item[tr_rows])
    tok = train_tokenizer(titles_at(data, train_items))
    save_tokenizer(tok, tmp / "tokenizer")
    tok = load_tokenizer(tmp / "tokenizer")  # use exactly the saved file from here on
    log(f"tokenizer: vocab {tok.get_vocab_size()}")

    edges = fit_edges(fields, [data.items[i] for i in train_items], [data.contexts[j] for j in tr_rows[:50_000]])
    feat = Featurizer(fields, edges)
    tensors = build_data(data, split, feats, has_img, tok, feat)
    img_items = train_items[has_img[train_items]]
    img_mean = feats[img_items].mean(0) if len(img_items) else np.zeros(IMAGE_DIM, np.float32)
    img_std = np.maximum(feats[img_items].std(0), 0.05) if len(img_items) else np.ones(IMAGE_DIM, np.float32)
    model = CTRModel(tok.get_vocab_size(), fields, feat.table_rows, img_mean, img_std)
    train(model, tensors, tcfg, log, seed=7)

    # ---- spread temperature + isotonic calibration on the held-out calibration split
    va = torch.nonzero(tensors.r_split == CALIB).squeeze(1)
    fit_spread_tau(model, tensors, va, log)
    pi, mu, sg = predict(model, tensors, va)
    raw_va, _ = mdn.moments(pi, mu, sg)
    cx, cy = ev.fit_isotonic(raw_va, data.clicks[va.numpy()], data.impressions[va.numpy()])
    log(f"isotonic calibration: {len(cx)} knots")

    # ---- export
    tables = model.tables.export_arrays()
    (tmp / "tables").mkdir()
    for fname, arr in tables.items():
        arr.astype("<f4").tofile(tmp / "tables" / f"{fname}.f32")
    (tmp / "oov").mkdir()
    model.oov_image.detach().numpy().astype("<f4").tofile(tmp / "oov" / "image.f32")
    model.oov_text.detach().numpy().astype("<f4").tofile(tmp / "oov" / "text.f32")

    test_items = np.unique(data.item[split == TEST])
    diffs = export_encoders(tmp, enc, model, tok, pixels, has_img, data, test_items)
    head_in = make_parity(tmp, model, enc, tok, feat, tables, data, split, has_img, files, (cx, cy),
                          n_parity, seed=31)
    export_head(model.head, tmp / "head.onnx", head_in)
    names = ["image_emb", "image_oov", "text_emb", "text_oov", "fields_emb"]
    diffs["head"] = max(max_abs_diff(model.head, tmp / "head.onnx", {k: v[:b] for k, v in zip(names, head_in)})
                        for b in (1, 3, len(head_in[0])))
    try:
        image_projection = split_head(tmp / "head.onnx", "image_emb", tmp)
        diffs["head_split_vs_head"] = check_split(tmp / "head.onnx", tmp, dict(zip(names, head_in)), "image_emb")
    except CannotSplit as e:  # a head whose image path is not affine steps + one dense layer: served whole
        log(f"head not split ({e}); the server runs head.onnx whole")
        image_projection = None
    log("onnx vs pytorch max abs diff: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))

    # ---- evaluation report
    from .report import run_report
    run_report(tmp / "report", model, tensors, data, feat, (cx, cy), diffs, fetcher.failures, log)

    # ---- sample for the TypeScript side
    if args.sample_out:
        write_sample(args.sample_out.resolve(), data, has_img, files,
                     150 if args.small else 1500, 30 if args.small else 200, seed=41)

    manifest = make_manifest(tmp, name, args.version, feat, edges, (cx, cy), diffs, image_projection)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    total = sum(v["bytes"] for v in manifest["files"].values())
    swap_in(tmp, out)
    log(f"bundle written to {out} ({total / 1e6:.1f} MB); build took {time.time() - T0:.0f}s")
    return 0


def export_encoders(tmp: Path, enc, model, tok, pixels, has_img, data: Log, test_items) -> dict:
    diffs = {}
    with_img = test_items[has_img[test_items]]
    px_idx = with_img[:16] if len(with_img) else np.flatnonzero(has_img)[:16]
    sample_px = normalize(pixels[px_idx] if len(px_idx) else pixels[:1])
    export_image_encoder(enc, tmp / "image_encoder.onnx", sample_px)
    diffs["image_encoder"] = max(max_abs_diff(enc, tmp / "image_encoder.onnx", {"pixels": sample_px[:b]})
                                 for b in (1, 5, 16))
    seqs = [s for s in encode(tok, titles_at(data, test_items[:64])) if s] or [[1]]
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
    return diffs


def make_manifest(tmp: Path, name: str, version: str, feat: Featurizer, edges, calib, diffs,
                  image_projection: dict | None) -> dict:
    gh_x, gh_w = mdn.gauss_hermite(GH_NODES)
    img_sha = sha256_file(tmp / "image_encoder.onnx")
    txt_sha = sha256_file(tmp / "text_encoder.onnx")
    fields = []
    for f in feat.fields:
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
        "format": 1, "name": name, "version": version,
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
                 "outputs": {"pi": "pi", "mu": "mu", "sigma": "sigma"},
                 **({"image_projection": {**image_projection, "sha256": files[image_projection["file"]]["sha256"],
                                          "rest": {**image_projection["rest"],
                                                   "sha256": files[image_projection["rest"]["file"]]["sha256"]}}}
                    if image_projection else {})},
        "oov": {"image": {"file": "oov/image.f32", "dim": IMAGE_DIM},
                "text": {"file": "oov/text.f32", "dim": TEXT_DIM}},
        "fields": fields,
        "hash_test_vectors": hash_vectors(feat.fields),
        "mdn": {"k": MDN_K, "gauss_hermite": {"nodes": [float(v) for v in gh_x], "weights": [float(v) for v in gh_w]},
                "quantiles": QUANTILES,
                "bisection": {"iterations": BISECT_ITERS, "span_sigmas": BISECT_SPAN}},
        "calibration": {"x": calib[0], "y": calib[1]},
        "parity": {"dir": "parity", "items": "parity/items.jsonl", "expected": "parity/expected.jsonl"},
        "report": "report/report.md",
        "onnx_vs_pytorch_max_abs_diff": diffs,
    }
    check_manifest(manifest)
    return manifest


if __name__ == "__main__":
    sys.exit(main())
