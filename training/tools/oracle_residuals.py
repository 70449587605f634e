"""What a model misses in the synthetic world: its error against the Bayes predictor on held-out rows,
regressed on the terms the generator adds into the logit mean m (synth.logit_mean, synth.make_items).

    python -m training.tools.ablate --variants base --dump DIR       # writes DIR/base-test.npz
    python -m training.tools.oracle_residuals DIR/base-test.npz [--n-rows N]

For each term: the share of it the model misses (the regression slope; 0 = learnt, 1 = ignored) and
the variance that leaves; then the rest of the error split into a per-item part and a within-item part.
Rows are matched by position, so the predictions must come from the synthetic rows of the same
DataConfig (read in file order, no invalid rows).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from .. import mdn, synth
from ..config import FULL


def terms(world, items, rows) -> dict[str, np.ndarray]:
    ctx, it = rows.ctx, rows.item
    t = items.topic[it]
    idx = lambda names, prefix: np.array([int(v[len(prefix):]) for v in names])  # noqa: E731
    tag_eff = np.array([world.tag_effect[idx(tg, "tag")].mean() for tg in items.tags])
    lang = np.array([synth.LANGUAGES.index(v) for v in items.language])
    dark = items.value < 0.45
    return {
        "segment x topic": world.seg_topic[ctx.segment, t],
        "site x topic": world.site_topic[ctx.site, t],
        "device x click-bait": np.where(ctx.device == 0, 0.2, np.where(ctx.device == 1, -0.12, 0.0)) * items.bait[it],
        "device x dark image": np.where(ctx.device == 0, -0.35, 0.15) * dark[it],
        "hour x topic": 0.25 * np.cos(2 * np.pi * (ctx.hour - world.topic_peak_hour[t]) / 24.0),
        "image hue": (0.45 * np.cos(2 * np.pi * (items.hue - 0.08)))[it],
        "image brightness": (0.5 * (items.value - 0.6))[it],
        "image shape": world.shape_effect[items.shape][it],
        "image texture": (-0.25 * (items.texture > 0.7))[it],
        "topic": world.topic_effect[t],
        "click-bait": 0.3 * items.bait[it],
        "publisher": world.pub_effect[idx(items.publisher, "pub")][it],
        "category": world.cat_effect[idx(items.category, "cat")][it],
        "tags": tag_eff[it],
        "language": world.lang_effect[lang][it],
        "age": (-0.18 * np.log1p(items.age_hours / 6.0))[it],
        "title length": (-0.01 * (items.title_len - 9) ** 2)[it],
        "country": world.country_effect[ctx.country],
        "site": world.site_effect[ctx.site],
        "device": np.where(ctx.device == 2, 0.15, 0.0),
    }


def analyse(path, world, items, rows, comp) -> None:
    d = np.load(path)
    r = d["rows"]
    ones = np.ones((len(r), 1))
    bayes, _ = mdn.moments(ones, rows.m[r][:, None], rows.s[r][:, None])
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    err = logit(bayes) - logit(d["raw"])
    X = np.stack([v[r] for v in comp.values()], 1)
    A = np.c_[X - X.mean(0), np.ones(len(r))]
    beta, *_ = np.linalg.lstsq(A, err, rcond=None)
    print(f"{path}: {len(r)} rows; error variance (logit of the mean) {err.var():.4f}, "
          f"of which the generator's terms explain {(A @ beta).var():.4f}")
    print("| term | variance in m | share missed | variance left |\n|---|---|---|---|")
    for k, b, v in zip(comp, beta, X.var(0)):
        print(f"| {k} | {v:.3f} | {b:+.2f} | {b * b * v:.4f} |")
    rest = err - A @ beta
    ids = rows.item[r]
    cnt = np.bincount(ids, minlength=len(items))
    per_item = (np.bincount(ids, weights=rest, minlength=len(items)) / np.maximum(cnt, 1))[ids]
    print(f"rest: per-item {per_item.var():.4f}, within-item {(rest - per_item).var():.4f} "
          f"(the item residual the generator adds has variance 0.01)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dumps", nargs="+")
    ap.add_argument("--n-rows", type=int, default=FULL.n_rows)
    args = ap.parse_args(argv)
    world, items, rows = synth.generate(dataclasses.replace(FULL, n_rows=args.n_rows))
    comp = terms(world, items, rows)
    for p in args.dumps:
        analyse(p, world, items, rows, comp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
