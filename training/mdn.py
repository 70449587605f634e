"""Mixture-of-logit-normals statistics in float64, exactly as docs/bundle-format.md defines them."""
from __future__ import annotations

import numpy as np
from scipy.special import expit, ndtr

from .config import BISECT_ITERS, BISECT_SPAN, GH_NODES


def gauss_hermite(n: int = GH_NODES) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.hermite.hermgauss(n)


def moments(pi, mu, sigma, nodes=None, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """raw_mean and std of p = sigmoid(z), z ~ sum_k pi_k N(mu_k, sigma_k^2); arrays [B, K]."""
    if nodes is None:
        nodes, weights = gauss_hermite()
    pi, mu, sigma = (np.asarray(a, dtype=np.float64) for a in (pi, mu, sigma))
    w = np.asarray(weights, np.float64) / np.sqrt(np.pi)
    p = expit(mu[..., None] + np.sqrt(2.0) * sigma[..., None] * np.asarray(nodes, np.float64))
    m1 = np.sum(pi * np.sum(w * p, axis=-1), axis=-1)
    m2 = np.sum(pi * np.sum(w * p * p, axis=-1), axis=-1)
    return m1, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))


def mixture_cdf_z(z, pi, mu, sigma) -> np.ndarray:
    return np.sum(pi * ndtr((np.asarray(z)[..., None] - mu) / sigma), axis=-1)


def quantile(q: float, pi, mu, sigma, iters: int = BISECT_ITERS) -> np.ndarray:
    """p_q = sigmoid(z_q), z_q by bisection on the mixture CDF over
    [min_k(mu_k - 10 sigma_k), max_k(mu_k + 10 sigma_k)]; returns the midpoint after `iters` halvings."""
    pi, mu, sigma = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (pi, mu, sigma))
    lo = np.min(mu - BISECT_SPAN * sigma, axis=-1)
    hi = np.max(mu + BISECT_SPAN * sigma, axis=-1)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf_z(mid, pi, mu, sigma) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return expit(0.5 * (lo + hi))


def calibrate(raw_mean, x, y) -> np.ndarray:
    return np.interp(raw_mean, x, y)
