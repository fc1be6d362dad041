"""Tests of the prior fitting (bac_ref.training.prior_fit, SPEC.md §4.4): fits follow their samples."""
import json

import numpy as np
import pytest

from bac_ref.training import prior_fit as PF


def test_fit_gaussian_uses_mean_and_std():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 500)) * [[3.0], [0.5]] + [[1.0], [-2.0]]
    prior = PF.fit_gaussian(x, axis=0)
    assert prior.kind == "gaussian"
    np.testing.assert_array_equal(prior.params["loc"], x.mean(axis=1))
    np.testing.assert_array_equal(prior.params["scale"], x.std(axis=1))


@pytest.mark.parametrize("method", ["kde", "balle"])
def test_empirical_fits_track_the_samples(method, fitted_priors):
    prior, x = fitted_priors[method], fitted_priors["x"]
    xi = np.array([0.05, 0.25, 0.5, 0.75, 0.9])
    for c in range(2):
        emp = np.quantile(x[c], xi)
        fit = prior.ppf(xi, c)
        assert np.max(np.abs(fit - emp)) < 0.1 * np.std(x[c]), (method, c, fit, emp)
    assert prior.table_bits == 9 and prior.kind == "table"
    assert json.loads(prior.params["info"])["method"] == ("kde" if method == "kde" else "balle2018")


def test_empirical_fit_axis_and_dead_channel():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 3, 8))                          # channels on axis 1
    x[:, 2] = 0.125                                              # a collapsed channel
    prior = PF.fit_empirical_prior(x, axis=1, table_bits=6)
    assert prior.num_channels == 3
    assert prior.table[2, 0] <= 0.125 <= prior.table[2, -1]
    with pytest.raises(ValueError, match="method"):
        PF.fit_empirical_prior(x, axis=1, method="histogram")
    with pytest.raises(ValueError, match="NaN"):
        PF.fit_empirical_prior(np.full((2, 10), np.nan))


def test_balle_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((2, 300))
    theta = PF._balle_init(2, 10.0, rng) + rng.normal(0, 0.3, (2, PF._NPAR))
    _, _, grad = PF._balle_forward(theta, y, True)
    eps = 1e-6
    for c, p in [(0, 0), (0, 5), (1, 17), (1, 30), (0, 42), (1, 40)]:
        e = np.zeros_like(theta)
        e[c, p] = eps
        num = (PF._balle_forward(theta + e, y, False)[1][c] - PF._balle_forward(theta - e, y, False)[1][c]) / (2 * eps)
        assert abs(num - grad[c, p]) < 1e-6 * max(1.0, abs(num))
