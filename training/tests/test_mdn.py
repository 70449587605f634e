import numpy as np
from scipy import integrate
from scipy.special import expit
from scipy.stats import norm

from training import evaluate as ev
from training import mdn


def _mixture(seed):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(4))[None]
    mu = rng.normal(-3.5, 1.0, 4)[None]
    sigma = rng.uniform(0.05, 1.5, 4)[None]
    return pi, mu, sigma


def _pdf(z, pi, mu, sigma):
    return float(np.sum(pi[0] * norm.pdf(z, mu[0], sigma[0])))


def test_moments_match_direct_integration():
    for seed in range(5):
        pi, mu, sigma = _mixture(seed)
        raw, std = mdn.moments(pi, mu, sigma)
        m1 = integrate.quad(lambda z: expit(z) * _pdf(z, pi, mu, sigma), -40, 40, limit=200, epsabs=1e-13)[0]
        m2 = integrate.quad(lambda z: expit(z) ** 2 * _pdf(z, pi, mu, sigma), -40, 40, limit=200, epsabs=1e-13)[0]
        assert abs(raw[0] - m1) < 1e-9
        assert abs(std[0] - np.sqrt(m2 - m1 * m1)) < 1e-8


def test_quantiles_invert_the_mixture_cdf():
    for seed in range(5):
        pi, mu, sigma = _mixture(seed)
        for q in (0.05, 0.25, 0.5, 0.95):
            p = mdn.quantile(q, pi, mu, sigma)[0]
            z = np.log(p / (1 - p))
            cdf = integrate.quad(lambda t: _pdf(t, pi, mu, sigma), -60, z, limit=200, epsabs=1e-13)[0]
            assert abs(cdf - q) < 1e-7


def test_single_component_matches_closed_form_quantiles():
    p = mdn.quantile(0.95, np.ones((1, 1)), np.full((1, 1), -3.0), np.full((1, 1), 0.4))[0]
    assert abs(p - expit(-3.0 + 0.4 * norm.ppf(0.95))) < 1e-12


def test_calibration_is_monotone_and_clamped():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.001, 0.1, 5000)
    n = rng.integers(10, 500, 5000).astype(float)
    c = rng.binomial(n.astype(int), np.clip(raw * 1.3, 0, 1)).astype(float)
    x, y = ev.fit_isotonic(raw, c, n)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
    assert 0 <= y[0] and y[-1] <= 1
    assert mdn.calibrate(-1.0, x, y) == y[0] and mdn.calibrate(2.0, x, y) == y[-1]
    grid = np.linspace(0, 0.2, 1000)
    assert np.all(np.diff(mdn.calibrate(grid, x, y)) >= 0)


def test_bundle_calibration_is_monotone(bundle_dir):
    import json
    cal = json.loads((bundle_dir / "manifest.json").read_text())["calibration"]
    assert len(cal["x"]) == len(cal["y"]) >= 2
    assert np.all(np.diff(cal["x"]) > 0) and np.all(np.diff(cal["y"]) >= 0)
