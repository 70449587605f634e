"""Deterministic synthetic world with a known oracle.

Items carry a latent appeal built from every modality (image traits, title topic and click-bait
cues, publisher, category, tags, language, age); contexts add main effects and interactions.
For each (item, context) row: z ~ N(m(item, ctx), s(item)^2), p* = sigmoid(z),
clicks ~ Binomial(impressions, p*). `m`, `s` and `p*` are kept for evaluation.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .config import FULL, IMAGE_SIZE, SMALL, DataConfig
from .fields import FieldSpec, save_spec

N_TOPICS = 12
N_CATEGORIES = 30
N_TAGS = 240
LANGUAGES = ["en", "es", "de", "fr", "pt", "ja", "it", "pl"]
LANG_P = [0.55, 0.12, 0.08, 0.08, 0.06, 0.05, 0.04, 0.02]
DEVICES = ["mobile", "desktop", "tablet"]
DEVICE_P = [0.6, 0.3, 0.1]
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "BR", "IN", "JP", "CA", "AU", "MX", "IT", "PL", "NL",
             "SE", "KR", "TR", "AR", "ZA", "NG"]
N_SITES = 40
N_SEGMENTS = 10
SHAPES = ["circle", "square", "triangle", "stripes", "none"]

BAIT_CUES = ["shocking", "unbelievable", "secret", "you", "won't", "believe", "top", "best",
             "amazing", "revealed", "!!", "why", "this", "trick", "instantly"]
FILLER = ["the", "a", "of", "in", "for", "and", "on", "new", "how", "with", "to", "from", "at",
          "our", "your", "after", "before", "about", "more", "most"]
SYLL = ["ka", "lo", "mi", "ren", "tor", "va", "quin", "sel", "bar", "dun", "fe", "gra", "hol",
        "jis", "ko", "lum", "mar", "nix", "ost", "pra", "ru", "sto", "tel", "ur", "vin", "wex",
        "yo", "zen", "cha", "dre"]
UNICODE_EXTRAS = ["café", "naïve", "über", "niño", "東京", "🚀", "🔥", "データ", "½"]


# The synthetic world's field spec (written beside its rows as fields.json). Order = fields_emb order.
# Site and segment get 16 dimensions: each carries a taste over 12 topics, which 8 cannot hold.
SYNTH_FIELDS: list[FieldSpec] = [
    FieldSpec("publisher", "item", "categorical", 16, seed=17, rows=4096),
    FieldSpec("category", "item", "categorical", 8, seed=23, rows=256),
    FieldSpec("tags", "item", "categorical", 8, multi=True, seed=29, rows=1024),
    FieldSpec("language", "item", "categorical", 4, seed=31, rows=64),
    FieldSpec("age_hours", "item", "numeric", 8, bins=16),
    FieldSpec("hist_ctr", "item", "numeric", 8, bins=16),
    FieldSpec("title_len", "item", "numeric", 4, bins=8),
    FieldSpec("device", "context", "categorical", 4, seed=37, rows=16),
    FieldSpec("country", "context", "categorical", 8, seed=41, rows=128),
    FieldSpec("site", "context", "categorical", 16, seed=43, rows=256),
    FieldSpec("segment", "context", "categorical", 16, seed=47, rows=64),
    FieldSpec("hour", "context", "numeric", 8, bins=24),
]


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(SYLL, size=rng.integers(2, 4)))


@dataclass
class World:
    """Fixed parameters of the synthetic world (drawn once from the seed)."""
    topic_words: list[list[str]]
    cat_topic: np.ndarray
    pub_effect: np.ndarray
    pub_pop: np.ndarray
    pub_topic: np.ndarray
    cat_effect: np.ndarray
    topic_effect: np.ndarray
    tag_effect: np.ndarray
    tag_topic: np.ndarray
    lang_effect: np.ndarray
    country_effect: np.ndarray
    country_pop: np.ndarray
    site_effect: np.ndarray
    site_topic: np.ndarray
    seg_topic: np.ndarray
    seg_pop: np.ndarray
    topic_peak_hour: np.ndarray
    shape_effect: np.ndarray
    intercept: float


def make_world(cfg: DataConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 1])
    topic_words = [[_word(rng) for _ in range(40)] for _ in range(N_TOPICS)]
    pub_pop = 1.0 / np.arange(1, cfg.n_publishers + 1) ** 1.1
    pub_pop = pub_pop / pub_pop.sum()
    return World(
        topic_words=topic_words,
        cat_topic=rng.integers(0, N_TOPICS, N_CATEGORIES),
        pub_effect=rng.normal(0, 0.25, cfg.n_publishers),
        pub_pop=pub_pop,
        pub_topic=rng.integers(0, N_TOPICS, cfg.n_publishers),
        cat_effect=rng.normal(0, 0.25, N_CATEGORIES),
        topic_effect=rng.normal(0, 0.25, N_TOPICS),
        tag_effect=rng.normal(0, 0.25, N_TAGS),
        tag_topic=rng.integers(0, N_TOPICS, N_TAGS),
        lang_effect=rng.normal(0, 0.15, len(LANGUAGES)),
        country_effect=rng.normal(0, 0.15, len(COUNTRIES)),
        country_pop=np.array([1.0 / (i + 1) ** 0.9 for i in range(len(COUNTRIES))]),
        site_effect=rng.normal(0, 0.2, N_SITES),
        site_topic=rng.normal(0, 0.3, (N_SITES, N_TOPICS)),
        seg_topic=rng.normal(0, 0.45, (N_SEGMENTS, N_TOPICS)),
        seg_pop=rng.dirichlet(np.ones(N_SEGMENTS) * 3),
        topic_peak_hour=rng.uniform(0, 24, N_TOPICS),
        shape_effect=np.array([0.3, -0.2, 0.1, 0.25, -0.3]),
        intercept=-3.75,
    )


# ----------------------------------------------------------------------------------------- items

@dataclass
class Items:
    ids: list[str]
    titles: list[str]
    publisher: list[str]
    category: list[str]
    tags: list[list[str]]
    language: list[str]
    age_hours: np.ndarray
    hist_ctr: np.ndarray          # NaN = missing
    title_len: np.ndarray
    # latent (oracle only)
    topic: np.ndarray
    bait: np.ndarray
    hue: np.ndarray
    value: np.ndarray
    shape: np.ndarray
    texture: np.ndarray
    volatile: np.ndarray
    item_mean: np.ndarray         # item part of the logit mean
    spread: np.ndarray            # s(item)
    img_seed: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, i: int, image_url: str) -> dict:
        num = {"age_hours": round(float(self.age_hours[i]), 3),
               "title_len": float(self.title_len[i])}
        if not math.isnan(self.hist_ctr[i]):
            num["hist_ctr"] = round(float(self.hist_ctr[i]), 6)
        return {
            "id": self.ids[i], "image_url": image_url, "title": self.titles[i],
            "categorical": {"publisher": self.publisher[i], "category": self.category[i],
                            "tags": list(self.tags[i]), "language": self.language[i]},
            "numeric": num,
        }


def make_items(cfg: DataConfig, world: World) -> Items:
    rng = np.random.default_rng([cfg.seed, 2])
    n = cfg.n_items
    pub = rng.choice(cfg.n_publishers, size=n, p=world.pub_pop)
    topic = np.where(rng.random(n) < 0.7, world.pub_topic[pub], rng.integers(0, N_TOPICS, n))
    cats_by_topic = [np.flatnonzero(world.cat_topic == t) for t in range(N_TOPICS)]
    category = np.array([rng.choice(cats_by_topic[t]) if len(cats_by_topic[t]) and rng.random() < 0.6
                         else rng.integers(0, N_CATEGORIES) for t in topic])
    tags_by_topic = [np.flatnonzero(world.tag_topic == t) for t in range(N_TOPICS)]
    lang = rng.choice(len(LANGUAGES), size=n, p=LANG_P)
    bait = rng.choice(3, size=n, p=[0.6, 0.28, 0.12])
    hue, value = rng.random(n), rng.uniform(0.25, 1.0, n)
    shape = rng.integers(0, len(SHAPES), n)
    texture = rng.random(n)
    age = np.exp(rng.normal(2.5, 1.3, n))
    volatile = rng.random(n) < 0.2

    titles, tags, tag_eff = [], [], np.zeros(n)
    for i in range(n):
        words = list(rng.choice(world.topic_words[topic[i]], size=rng.integers(2, 6)))
        words += list(rng.choice(FILLER, size=rng.integers(1, 5)))
        if rng.random() < 0.25:  # off-topic words make the text signal noisy
            words += list(rng.choice(world.topic_words[rng.integers(N_TOPICS)], size=rng.integers(1, 3)))
        words += list(rng.choice(BAIT_CUES, size=2 * bait[i], replace=False))
        if rng.random() < 0.05:
            words.append(str(rng.choice(UNICODE_EXTRAS)))
        rng.shuffle(words)
        if bait[i] == 2 and rng.random() < 0.5:
            words.insert(0, str(rng.integers(3, 21)))
        t = " ".join(words)
        titles.append(t[0].upper() + t[1:])
        k = rng.integers(1, 5)
        pool = tags_by_topic[topic[i]] if len(tags_by_topic[topic[i]]) >= 2 else np.arange(N_TAGS)
        tg = list(rng.choice(pool, size=min(k, len(pool)), replace=False))
        if rng.random() < 0.3:
            tg.append(int(rng.integers(N_TAGS)))
        tags.append([f"tag{t:03d}" for t in tg])
        tag_eff[i] = world.tag_effect[tg].mean()

    title_len = np.array([len(t.split()) for t in titles], dtype=np.float64)
    img = (0.45 * np.cos(2 * np.pi * (hue - 0.08)) + 0.5 * (value - 0.6)
           + world.shape_effect[shape] - 0.25 * (texture > 0.7))
    resid = rng.normal(0, 0.1, n)
    item_mean = (world.pub_effect[pub] + world.cat_effect[category] + world.topic_effect[topic]
                 + tag_eff + world.lang_effect[lang] + img + 0.3 * bait
                 - 0.18 * np.log1p(age / 6.0) - 0.01 * (title_len - 9) ** 2 + resid)
    spread = np.where(volatile, 0.5, 0.15) + 0.05 * (age < 3)
    base = 1 / (1 + np.exp(-(world.intercept + item_mean)))
    # a noisy, often-missing historical CTR: informative, but leaves room for image and text
    hist = 1 / (1 + np.exp(-(np.log(base / (1 - base)) + rng.normal(0, 0.6, n))))
    hist[rng.random(n) < 0.3] = np.nan

    return Items(
        ids=[f"i{i:05d}" for i in range(n)], titles=titles,
        publisher=[f"pub{p:04d}" for p in pub], category=[f"cat{c:02d}" for c in category],
        tags=tags, language=[LANGUAGES[l] for l in lang], age_hours=age, hist_ctr=hist,
        title_len=title_len, topic=topic, bait=bait, hue=hue, value=value, shape=shape,
        texture=texture, volatile=volatile, item_mean=item_mean, spread=spread,
        img_seed=rng.integers(0, 2**31 - 1, n),
    )


def draw_image(items: Items, i: int) -> Image.Image:
    """Procedural 128x128 picture: background hue/brightness, a shape, texture, text-like marks."""
    rng = np.random.default_rng(int(items.img_seed[i]))
    s = IMAGE_SIZE
    h, v = float(items.hue[i]), float(items.value[i])
    bg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.55 + 0.4 * rng.random(), v))
    fg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((h + 0.5) % 1.0, 0.8, 1.0 - 0.6 * v + 0.3))
    im = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(im)
    n_tex = int(items.texture[i] * 300)
    for _ in range(n_tex):
        x, y = rng.integers(0, s, 2)
        c = tuple(int(min(255, max(0, b + rng.integers(-60, 61)))) for b in bg)
        d.point((int(x), int(y)), fill=c)
        if items.texture[i] > 0.7:
            d.line((int(x), int(y), int(x) + int(rng.integers(-9, 10)), int(y) + int(rng.integers(-9, 10))), fill=c)
    cx, cy, r = rng.integers(40, 88), rng.integers(40, 88), rng.integers(18, 36)
    kind = SHAPES[int(items.shape[i])]
    if kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif kind == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif kind == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif kind == "stripes":
        for k in range(-s, s, 16):
            d.line((k, 0, k + s, s), fill=fg, width=5)
    for _ in range(int(rng.integers(0, 4))):  # text-like marks
        y = int(rng.integers(4, s - 10))
        x = int(rng.integers(4, 40))
        for _ in range(int(rng.integers(3, 9))):
            w = int(rng.integers(3, 9))
            d.rectangle((x, y, x + w, y + 5), fill=(20, 20, 20) if v > 0.5 else (240, 240, 240))
            x += w + 3
            if x > s - 12:
                break
    return im


def save_jpeg(im: Image.Image, path) -> None:
    im.save(path, format="JPEG", quality=90)


# -------------------------------------------------------------------------------------- contexts

@dataclass
class Contexts:
    device: np.ndarray
    country: np.ndarray
    site: np.ndarray
    segment: np.ndarray
    hour: np.ndarray

    def record(self, j: int) -> dict:
        return {"categorical": {"device": DEVICES[self.device[j]], "country": COUNTRIES[self.country[j]],
                                "site": f"site{self.site[j]:02d}", "segment": f"seg{self.segment[j]}"},
                "numeric": {"hour": int(self.hour[j])}}


def make_contexts(n: int, seed: int, world: World) -> Contexts:
    rng = np.random.default_rng(seed)
    cp = world.country_pop / world.country_pop.sum()
    return Contexts(
        device=rng.choice(len(DEVICES), size=n, p=DEVICE_P),
        country=rng.choice(len(COUNTRIES), size=n, p=cp),
        site=rng.integers(0, N_SITES, n),
        segment=rng.choice(N_SEGMENTS, size=n, p=world.seg_pop),
        hour=rng.integers(0, 24, n),
    )


def logit_mean(world: World, items: Items, item_idx: np.ndarray, ctx: Contexts) -> np.ndarray:
    """Oracle mean of z for rows (item_idx[r], context r)."""
    t = items.topic[item_idx]
    bait = items.bait[item_idx]
    dev = ctx.device
    m = world.intercept + items.item_mean[item_idx]
    m = m + world.country_effect[ctx.country] + world.site_effect[ctx.site]
    m = m + world.seg_topic[ctx.segment, t] + world.site_topic[ctx.site, t]
    m = m + np.where(dev == 0, 0.2, np.where(dev == 1, -0.12, 0.0)) * bait        # mobile likes bait
    m = m + np.where(dev == 0, -0.35, 0.15) * (items.value[item_idx] < 0.45)        # dark pics on phones
    m = m + 0.25 * np.cos(2 * np.pi * (ctx.hour - world.topic_peak_hour[t]) / 24.0)
    m = m + np.where(dev == 2, 0.15, 0.0)
    return m


@dataclass
class Rows:
    item: np.ndarray
    ctx: Contexts
    impressions: np.ndarray
    clicks: np.ndarray
    m: np.ndarray
    s: np.ndarray
    z: np.ndarray

    @property
    def p_star(self) -> np.ndarray:
        return 1 / (1 + np.exp(-self.z))


def make_rows(cfg: DataConfig, world: World, items: Items) -> Rows:
    rng = np.random.default_rng([cfg.seed, 3])
    n = cfg.n_rows
    item = rng.integers(0, len(items), n)
    ctx = make_contexts(n, cfg.seed + 7, world)
    m = logit_mean(world, items, item, ctx)
    s = items.spread[item]
    z = m + s * rng.standard_normal(n)
    impressions = np.clip(np.round(np.exp(rng.normal(cfg.mean_log_impr, 0.8, n))), 10, 5000).astype(np.int64)
    clicks = rng.binomial(impressions, 1 / (1 + np.exp(-z)))
    return Rows(item=item, ctx=ctx, impressions=impressions, clicks=clicks, m=m, s=s, z=z)


def split_items(cfg: DataConfig, n_items: int) -> np.ndarray:
    """0 = train, 1 = calibration, 2 = test, 3 = validation (by item, so test items are unseen)."""
    rng = np.random.default_rng([cfg.seed, 4])
    u = rng.random(n_items)
    a, b, c, _ = np.cumsum(cfg.split)
    return np.where(u < a, 0, np.where(u < b, 3, np.where(u < c, 1, 2)))


def generate(cfg: DataConfig):
    world = make_world(cfg)
    items = make_items(cfg, world)
    rows = make_rows(cfg, world, items)
    return world, items, rows


# ------------------------------------------------------------------------------- rows on disk

def write_world(cfg: DataConfig, out: Path, log=print) -> Path:
    """The synthetic world as training rows (`rows.jsonl`, images under `images/`, `fields.json`),
    with the oracle (m, s, z of each row) beside the labels for evaluation. Returns the rows path."""
    world, items, rows = generate(cfg)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    for i in range(len(items)):
        save_jpeg(draw_image(items, i), tmp / "images" / f"{items.ids[i]}.jpg")
    recs = [items.record(i, f"images/{items.ids[i]}.jpg") for i in range(len(items))]
    with open(tmp / "rows.jsonl", "w", encoding="utf-8") as f:
        for r in range(len(rows.item)):
            row = {"context": rows.ctx.record(r), "item": recs[rows.item[r]],
                   "impressions": int(rows.impressions[r]), "clicks": int(rows.clicks[r]),
                   "oracle": {"m": round(float(rows.m[r]), 6), "s": round(float(rows.s[r]), 6),
                              "z": round(float(rows.z[r]), 6)}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    save_spec(SYNTH_FIELDS, tmp / "fields.json")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    log(f"synthetic world: {len(items)} items, {len(rows.item)} rows -> {out}")
    return out / "rows.jsonl"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write the synthetic world as training rows.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--small", action="store_true", help="a few hundred items (tests)")
    args = ap.parse_args(argv)
    write_world(SMALL if args.small else FULL, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
