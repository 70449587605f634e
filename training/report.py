"""Evaluation on the test split (items never seen in training), side by side with the oracle."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from . import evaluate as ev
from . import mdn
from .config import FIELDS


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def run_report(out: Path, model, data, rows, items, split, feat, calib, diffs, log) -> dict:
    te = torch.nonzero(data.r_split == 2).squeeze(1)
    tr = torch.nonzero(data.r_split == 0).squeeze(1)
    ti = te.numpy()
    c, n = rows.clicks[ti].astype(np.float64), rows.impressions[ti].astype(np.float64)
    p_star, m, s, z_star = rows.p_star[ti], rows.m[ti], rows.s[ti], rows.z[ti]
    gh_x, gh_w = mdn.gauss_hermite()

    pi, mu, sg = (np.asarray(a, np.float64) for a in ev_predict(model, data, te))
    raw, std = mdn.moments(pi, mu, sg)
    cal = mdn.calibrate(raw, *calib)
    q = {k: mdn.quantile(v, pi, mu, sg) for k, v in {"p05": .05, "p25": .25, "p75": .75, "p95": .95}.items()}
    cov50 = float(np.mean((p_star >= q["p25"]) & (p_star <= q["p75"])))
    cov90 = float(np.mean((p_star >= q["p05"]) & (p_star <= q["p95"])))
    pit = mdn.mixture_cdf_z(z_star, pi, mu, sg)
    pit_hist = np.histogram(pit, bins=20, range=(0, 1), density=True)[0]

    ones = np.ones((len(ti), 1))
    orc_mean, _ = mdn.moments(ones, m[:, None], s[:, None], gh_x, gh_w)
    cols = {}
    cols["oracle p*"] = ev.point_metrics(p_star, c, n)
    cols["oracle E[p*|x]"] = ev.point_metrics(orc_mean, c, n)
    cols["oracle E[p*|x]"]["nll_counts"] = ev.nll_mixture(ones, m[:, None], s[:, None], c, n)
    cols["oracle E[p*|x]"].update({"cov50": float(np.mean(np.abs(z_star - m) <= 0.6744897501960817 * s)),
                                   "cov90": float(np.mean(np.abs(z_star - m) <= 1.6448536269514722 * s))})
    cols["model (raw mean)"] = ev.point_metrics(raw, c, n)
    cols["model (raw mean)"]["nll_counts"] = ev.nll_mixture(pi, mu, sg, c, n)
    cols["model (raw mean)"].update({"cov50": cov50, "cov90": cov90})
    cols["model (calibrated)"] = ev.point_metrics(cal, c, n)
    cols["model (calibrated)"]["nll_counts"] = None  # a point estimate has no spread; see raw column

    # categorical-only logistic regression baseline
    cat = [f for f in FIELDS if f.type == "categorical"]
    def X(idx):
        it = data.r_item[idx]
        mats = [(data.i_fields[f.name][it] if f.scope == "item" else data.r_fields[f.name][idx]).numpy() for f in cat]
        return ev.one_hot(mats, [f.rows for f in cat])
    lr = ev.fit_baseline(X(tr), rows.clicks[tr.numpy()], rows.impressions[tr.numpy()])
    p_base = lr.predict_proba(X(te))[:, 1]
    cols["baseline LR (categorical)"] = ev.point_metrics(p_base, c, n)
    log("baseline fitted")

    abl = {}
    for name, io, to in (("image OOV", True, False), ("text OOV", False, True), ("image+text OOV", True, True)):
        a, b, d = (np.asarray(x, np.float64) for x in ev_predict(model, data, te, io, to))
        r, sd = mdn.moments(a, b, d)
        lo, hi = mdn.quantile(.05, a, b, d), mdn.quantile(.95, a, b, d)
        abl[name] = {"auc": ev.auc(r, c, n), "mean_std": float(sd.mean()),
                     "mean_width90": float(np.mean(hi - lo)),
                     "cov90": float(np.mean((p_star >= lo) & (p_star <= hi)))}
    abl["none (all present)"] = {"auc": cols["model (raw mean)"]["auc"], "mean_std": float(std.mean()),
                                 "mean_width90": float(np.mean(q["p95"] - q["p05"])), "cov90": cov90}

    targets = {
        "auc_within_0.02_of_oracle": cols["oracle p*"]["auc"] - cols["model (raw mean)"]["auc"] <= 0.02,
        "auc_0.03_above_baseline": cols["model (raw mean)"]["auc"] - cols["baseline LR (categorical)"]["auc"] >= 0.03,
        "cov90_in_[0.85,0.95]": 0.85 <= cov90 <= 0.95,
        "ece_calibrated_le_0.002": cols["model (calibrated)"]["ece"] <= 0.002,
        "onnx_max_abs_diff_le_1e-5": max(diffs.values()) <= 1e-5,
    }
    res = {"split": {"test_rows": int(len(ti)), "test_items": int(np.sum(split == 2)),
                     "impressions": int(n.sum()), "clicks": int(c.sum())},
           "columns": cols, "ablations": abl, "pit_hist": [float(v) for v in pit_hist],
           "onnx_vs_pytorch_max_abs_diff": diffs, "targets": targets}
    plots = {"reliability": dict(zip(["model raw", "model calibrated", "baseline"],
                                     [ev.reliability(raw, c, n), ev.reliability(cal, c, n), ev.reliability(p_base, c, n)])),
             "pit": pit_hist,
             "auc": {"oracle p*": cols["oracle p*"]["auc"], "oracle E[p*|x]": cols["oracle E[p*|x]"]["auc"],
                     "model": cols["model (raw mean)"]["auc"], "model, image OOV": abl["image OOV"]["auc"],
                     "model, text OOV": abl["text OOV"]["auc"], "model, both OOV": abl["image+text OOV"]["auc"],
                     "baseline LR": cols["baseline LR (categorical)"]["auc"]},
             "coverage": {"50%": (0.5, cov50), "90%": (0.9, cov90)}}
    ev.write_report(out, res, plots)
    (out / "report.md").write_text(markdown(res))
    log("report: " + json.dumps({k: round(v["auc"], 4) for k, v in cols.items()}) + f" cov90 {cov90:.3f}")
    return res


def ev_predict(model, data, rows, io=False, to=False):
    from .train import predict
    return predict(model, data, rows, io, to)


def markdown(r: dict) -> str:
    cols = r["columns"]
    names = list(cols)
    metrics = [("auc", "AUC ↑"), ("logloss", "log-loss ↓"), ("ne", "normalized entropy ↓"),
               ("ece", "ECE, 20 equal-mass bins ↓"), ("nll_counts", "NLL of click counts / row ↓"),
               ("cov50", "coverage of p*, 50% interval"), ("cov90", "coverage of p*, 90% interval")]
    L = ["# ctr-synth evaluation report", "",
         f"Test split: {r['split']['test_items']} items never seen in training, {r['split']['test_rows']} "
         f"(item, context) rows, {r['split']['impressions']} impressions, {r['split']['clicks']} clicks.", "",
         "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k, label in metrics:
        L.append(f"| {label} | " + " | ".join(_fmt(cols[c].get(k)) for c in names) + " |")
    L += ["", "- *oracle p\\**: the true per-row CTR (includes the row's own noise, unreachable from features).",
          "- *oracle E[p\\*|x]*: the Bayes predictor, the true logit-normal N(m, s²) of each row; its NLL and"
          " coverage use that distribution.",
          "- *model (raw mean)*: the MDN mixture mean (Gauss–Hermite); NLL integrates the binomial over the mixture;"
          " coverage uses the mixture quantiles. *calibrated*: isotonic on the calibration split.",
          "- *baseline*: logistic regression on one-hot hashed categorical fields only (item + context).", "",
          "## OOV ablations (test split)", "", "| inputs | AUC | mean std of p | mean 90% width | 90% coverage |",
          "|---|---|---|---|---|"]
    for k, v in r["ablations"].items():
        L.append(f"| {k} | {v['auc']:.4f} | {v['mean_std']:.4f} | {v['mean_width90']:.4f} | {v['cov90']:.4f} |")
    L += ["", "## ONNX (onnxruntime) vs PyTorch, max abs diff on real inputs", ""]
    L += [f"- {k}: {v:.2e}" for k, v in r["onnx_vs_pytorch_max_abs_diff"].items()]
    L += ["", "## Targets", ""] + [f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in r["targets"].items()]
    L += ["", "## Plots", "", "![AUC](auc.png)", "![reliability](reliability.png)", "![PIT](pit.png)",
          "![coverage](coverage.png)", ""]
    return "\n".join(L)
