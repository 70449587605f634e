"""Held-out metrics, the categorical-only logistic-regression baseline, and the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, gammaln, logsumexp
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from . import mdn

EPS = 1e-12


def auc(p, c, n) -> float:
    y = np.r_[np.ones(len(p)), np.zeros(len(p))]
    return float(roc_auc_score(y, np.r_[p, p], sample_weight=np.r_[c, n - c]))


def logloss(p, c, n) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-(c * np.log(p) + (n - c) * np.log1p(-p)).sum() / n.sum())


def normalized_entropy(p, c, n) -> float:
    b = c.sum() / n.sum()
    return logloss(p, c, n) / float(-(b * np.log(b) + (1 - b) * np.log1p(-b)))


def ece_equal_mass(p, c, n, bins: int = 20) -> float:
    o = np.argsort(p, kind="stable")
    p, c, n = p[o], c[o], n[o]
    cum = np.cumsum(n)
    b = np.minimum((cum - 0.5 * n) * bins // cum[-1], bins - 1).astype(int)
    tot = 0.0
    for k in range(bins):
        m = b == k
        if not m.any():
            continue
        nk = n[m].sum()
        tot += nk * abs(c[m].sum() / nk - (p[m] * n[m]).sum() / nk)
    return float(tot / n.sum())


def reliability(p, c, n, bins: int = 20):
    o = np.argsort(p, kind="stable")
    p, c, n = p[o], c[o], n[o]
    cum = np.cumsum(n)
    b = np.minimum((cum - 0.5 * n) * bins // cum[-1], bins - 1).astype(int)
    xs, ys = [], []
    for k in range(bins):
        m = b == k
        if m.any():
            xs.append((p[m] * n[m]).sum() / n[m].sum())
            ys.append(c[m].sum() / n[m].sum())
    return np.array(xs), np.array(ys)


def log_binom_coef(c, n):
    return gammaln(n + 1) - gammaln(c + 1) - gammaln(n - c + 1)


def nll_point(p, c, n) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-(log_binom_coef(c, n) + c * np.log(p) + (n - c) * np.log1p(-p)).mean())


def nll_mixture(pi, mu, sigma, c, n, nodes=None, weights=None) -> float:
    if nodes is None:
        nodes, weights = mdn.gauss_hermite()
    z = mu[..., None] + np.sqrt(2) * sigma[..., None] * nodes            # [B, K, Q]
    ll = c[:, None, None] * -np.logaddexp(0, -z) + (n - c)[:, None, None] * -np.logaddexp(0, z)
    ll = ll + np.log(weights / np.sqrt(np.pi)) + np.log(np.maximum(pi, 1e-300))[..., None]
    return float(-(logsumexp(ll.reshape(len(c), -1), axis=1) + log_binom_coef(c, n)).mean())


def fit_isotonic(raw, c, n) -> tuple[list[float], list[float]]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(raw, c / n, sample_weight=n)
    x, y = iso.X_thresholds_.astype(np.float64), iso.y_thresholds_.astype(np.float64)
    keep = np.r_[True, np.diff(x) > 0]
    return [float(v) for v in x[keep]], [float(v) for v in y[keep]]


# --------------------------------------------------------------------------------- baseline

def one_hot(cat_rows: list[np.ndarray], sizes: list[int]) -> sp.csr_matrix:
    """cat_rows: per field, [R] or [R, T] (multi, -1 padded; averaged) rows."""
    mats, off = [], 0
    for r, size in zip(cat_rows, sizes):
        r2 = r if r.ndim == 2 else r[:, None]
        valid = r2 >= 0
        cnt = np.maximum(valid.sum(1, keepdims=True), 1)
        rr, cc = np.nonzero(valid)
        vals = (1.0 / cnt.repeat(r2.shape[1], 1))[valid]
        mats.append(sp.csr_matrix((vals, (rr, r2[valid] + 0)), shape=(len(r2), size)))
        off += size
    return sp.hstack(mats).tocsr()


def fit_baseline(X_tr, c_tr, n_tr, C: float = 0.5) -> LogisticRegression:
    X = sp.vstack([X_tr, X_tr])
    y = np.r_[np.ones(X_tr.shape[0]), np.zeros(X_tr.shape[0])]
    w = np.r_[c_tr, n_tr - c_tr].astype(np.float64)
    keep = w > 0
    lr = LogisticRegression(C=C, max_iter=300, solver="lbfgs")
    lr.fit(X[keep], y[keep], sample_weight=w[keep] / w[keep].mean())
    return lr


# ----------------------------------------------------------------------------------- metrics

def point_metrics(p, c, n) -> dict:
    return {"auc": auc(p, c, n), "logloss": logloss(p, c, n), "ne": normalized_entropy(p, c, n),
            "ece": ece_equal_mass(p, c, n), "nll_counts": nll_point(p, c, n)}


def write_report(out: Path, metrics: dict, plots: dict) -> None:
    """metrics: {column: {metric: value}}, plus extra sections."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")

    # reliability
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (xs, ys) in plots["reliability"].items():
        ax.plot(xs, ys, "o-", ms=3, label=name)
    lim = max(max(np.max(v[0]) for v in plots["reliability"].values()), 0.01) * 1.05
    ax.plot([0, lim], [0, lim], "k:", lw=1)
    ax.set(xlabel="predicted CTR (impression-weighted bin mean)", ylabel="observed CTR",
           title="Reliability, 20 equal-mass bins (test split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)

    if "pit" in plots:
        _pit_plot(plt, out, plots["pit"])
    _auc_plot(plt, out, plots["auc"])
    _coverage_plot(plt, out, plots["coverage"], plots.get("coverage_of", "p*"))


def _pit_plot(plt, out: Path, h) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(np.arange(len(h)) / len(h), h, width=1 / len(h), align="edge", edgecolor="k")
    ax.axhline(1.0, color="r", ls=":")
    ax.set(xlabel="PIT = F_model(z*)", ylabel="density", title="PIT histogram of p* (unseen items)")
    fig.tight_layout()
    fig.savefig(out / "pit.png", dpi=110)
    plt.close(fig)


def _auc_plot(plt, out: Path, aucs: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(aucs.keys())
    vals = [aucs[k] for k in names]
    ax.barh(names, vals)
    ax.set_xlim(min(vals) - 0.03, max(vals) + 0.01)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.4f}", va="center")
    ax.set(xlabel="AUC (impression-level)", title="AUC (test split unless noted)")
    fig.tight_layout()
    fig.savefig(out / "auc.png", dpi=110)
    plt.close(fig)


def _coverage_plot(plt, out: Path, cov: dict, of: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(cov))
    ax.bar(x - 0.2, [v[0] for v in cov.values()], 0.4, label="nominal")
    ax.bar(x + 0.2, [v[1] for v in cov.values()], 0.4, label="model")
    ax.set_xticks(x, list(cov.keys()))
    ax.set(ylim=(0, 1), title=f"Interval coverage of {of}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "coverage.png", dpi=110)
    plt.close(fig)
