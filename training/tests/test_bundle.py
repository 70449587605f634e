"""The committed bundle is self-consistent: everything recomputed from the manifest + raw inputs
(the way the server does it, with onnxruntime) matches parity/expected.jsonl."""
import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from training import mdn
from training.fields import FieldSpec
from training.encoders import decode_image, normalize, pixels_sha256
from training.features import Featurizer, fields_emb_numpy
from training.tokenizer import encode, load_tokenizer, pad_batch


def load(bundle_dir):
    man = json.loads((bundle_dir / "manifest.json").read_text())
    items = [json.loads(l) for l in (bundle_dir / man["parity"]["items"]).read_text().splitlines()]
    expected = [json.loads(l) for l in (bundle_dir / man["parity"]["expected"]).read_text().splitlines()]
    return bundle_dir, man, items, expected


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load(bundle_dir)


def test_manifest_files_and_shapes(bundle):
    d, man, _, _ = bundle
    for rel, meta in man["files"].items():
        data = (d / rel).read_bytes()
        assert len(data) == meta["bytes"] and hashlib.sha256(data).hexdigest() == meta["sha256"], rel
    for f in man["fields"]:
        assert (d / f["table"]).stat().st_size == 4 * f["rows"] * f["dim"]
        if f["type"] == "numeric":
            assert f["rows"] == len(f["edges"]) + 2 and np.all(np.diff(f["edges"]) > 0)
    for k, v in man["oov"].items():
        assert (d / v["file"]).stat().st_size == 4 * v["dim"]
    assert man["encoders"]["image"]["version"] == man["encoders"]["image"]["sha256"][:16]
    assert sum(v["bytes"] for v in man["files"].values()) < 100e6


def _sess(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_parity_fixtures_recomputed_with_onnxruntime(bundle):
    d, man, items, expected = bundle
    assert len(items) == len(expected) >= 20
    assert any(r["image_oov"] for r in items) and any(r["text_oov"] for r in items)
    fields = [FieldSpec(f["name"], f["scope"], f["type"], f["dim"], f["multi"],
                        f.get("hash", {}).get("seed", 0), f["rows"]) for f in man["fields"]]
    feat = Featurizer(fields, {f["name"]: f["edges"] for f in man["fields"] if f["type"] == "numeric"})
    tables = {f["name"]: np.fromfile(d / f["table"], "<f4").reshape(f["rows"], f["dim"]) for f in man["fields"]}
    tok = load_tokenizer(d / man["encoders"]["text"]["tokenizer_dir"])
    img = _sess(d / man["encoders"]["image"]["file"])
    txt = _sess(d / man["encoders"]["text"]["file"])
    head = _sess(d / man["head"]["file"])
    oov_img = np.fromfile(d / man["oov"]["image"]["file"], "<f4")
    oov_txt = np.fromfile(d / man["oov"]["text"]["file"], "<f4")
    cal = man["calibration"]
    worst = {"image": 0.0, "text": 0.0, "head": 0.0}
    for r, e in zip(items, expected):
        assert r["id"] == e["id"]
        px = decode_image(d / r["image_file"])
        assert pixels_sha256(px) == e["pixels_sha256"]
        if r["image_oov"]:
            np.testing.assert_array_equal(np.float32(e["image_emb"]), oov_img)
        else:
            out = img.run(None, {"pixels": normalize(px[None])})[0][0]
            worst["image"] = max(worst["image"], float(np.max(np.abs(out - e["image_emb"]))))
        ids = encode(tok, [r["item"]["title"]])[0] if r["item"].get("title") else []
        assert ids == e["input_ids"]
        if r["text_oov"]:
            np.testing.assert_array_equal(np.float32(e["text_emb"]), oov_txt)
        else:
            a, m = pad_batch([ids])
            out = txt.run(None, {"input_ids": a, "attention_mask": m})[0][0]
            worst["text"] = max(worst["text"], float(np.max(np.abs(out - e["text_emb"]))))
        fe = fields_emb_numpy(fields, tables, feat.record_rows(r["item"], r["context"]))
        np.testing.assert_allclose(fe, e["fields_emb"], atol=1e-6)
    feeds = {"image_emb": np.array([e["image_emb"] for e in expected], np.float32),
             "image_oov": np.array([[float(r["image_oov"])] for r in items], np.float32),
             "text_emb": np.array([e["text_emb"] for e in expected], np.float32),
             "text_oov": np.array([[float(r["text_oov"])] for r in items], np.float32),
             "fields_emb": np.array([e["fields_emb"] for e in expected], np.float32)}
    pi, mu, sigma = head.run(["pi", "mu", "sigma"], feeds)
    for name, arr in (("pi", pi), ("mu", mu), ("sigma", sigma)):
        worst["head"] = max(worst["head"], float(np.max(np.abs(arr - np.array([e[name] for e in expected])))))
    assert worst["image"] <= 1e-4 and worst["text"] <= 1e-5 and worst["head"] <= 1e-5, worst
    E = lambda k: np.array([e[k] for e in expected], np.float64)  # noqa: E731
    nodes, weights = man["mdn"]["gauss_hermite"]["nodes"], man["mdn"]["gauss_hermite"]["weights"]
    raw, std = mdn.moments(E("pi"), E("mu"), E("sigma"), np.array(nodes), np.array(weights))
    np.testing.assert_allclose(raw, E("raw_mean"), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, E("std"), rtol=1e-9, atol=1e-15)
    for k, q in man["mdn"]["quantiles"].items():
        np.testing.assert_allclose(mdn.quantile(q, E("pi"), E("mu"), E("sigma")),
                                   [e["quantiles"][k] for e in expected], rtol=1e-10)
    np.testing.assert_allclose(np.interp(raw, cal["x"], cal["y"]), E("mean"), rtol=1e-12, atol=1e-15)
    assert np.all(E("std") > 0) and np.all(E("raw_mean") > 0)


def test_split_head_computes_the_head(bundle):
    """head_rest(head_image(image), …) = head(image, …) on the parity fixtures, within 1e-6."""
    from training.head_split import parity_feeds, check_split

    d, man, _, _ = bundle
    spec = man["head"]["image_projection"]
    assert spec["dim"] == 64 and spec["output"] == "image_proj"
    feeds = parity_feeds(d, man)
    assert check_split(d / man["head"]["file"], d, feeds, man["head"]["inputs"]["image"]) <= 1e-6
    proj = _sess(d / spec["file"]).run(None, {man["head"]["inputs"]["image"]: feeds["image_emb"]})[0]
    assert proj.shape == (len(feeds["image_emb"]), spec["dim"])
