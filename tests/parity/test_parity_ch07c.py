"""Gaussian-process code of notebooks/07c_hyperparameter_optimization.ipynb (nndl_helpers.chapters.ch07c)
against torch: the hand-written gradient of the log marginal likelihood against torch.autograd in float64,
the kernel, the normal CDF and expected improvement against torch's formulas, and the input errors."""
import math

import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers.chapters.ch07c import (
    expected_improvement,
    gp_log_marginal_likelihood,
    hyperband_brackets,
    matern52_kernel,
    normal_cdf,
    unit_to_config,
    warp_score,
)

TOL = 1e-6


def torch_matern52(A, B, theta):
    D = ((A[:, None, :] - B[None, :, :]) / torch.exp(theta[1:])) ** 2
    r = torch.sqrt(torch.clamp(D.sum(-1), min=1e-30))     # sqrt's slope is infinite at 0 (the diagonal)
    return torch.exp(theta[0]) * (1 + math.sqrt(5) * r + 5 * r**2 / 3) * torch.exp(-math.sqrt(5) * r)


def torch_lml(theta, X, y):
    K = torch_matern52(X, X, theta[:-1]) + torch.exp(theta[-1]) * torch.eye(len(X), dtype=X.dtype)
    return torch.distributions.MultivariateNormal(torch.zeros_like(y), covariance_matrix=K).log_prob(y)


def problem(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    y = np.sin(4 * X.sum(1)) + 0.1 * rng.standard_normal(n)
    theta = np.r_[rng.normal(0, 0.5), np.log(rng.uniform(0.1, 2.0, d)), np.log(rng.uniform(1e-4, 0.3))]
    return theta, X, y


@pytest.mark.parametrize("n,d", [(1, 1), (2, 1), (6, 1), (9, 2), (12, 3), (25, 3), (15, 5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_marginal_likelihood_and_gradient_match_autograd(n, d, seed):
    theta, X, y = problem(n, d, seed)
    lml, grad = gp_log_marginal_likelihood(theta, X, y)
    ref = nh.autograd_gradients(torch_lml, {"theta": theta, "X": X, "y": y}, wrt=["theta"])
    value = torch_lml(*(torch.from_numpy(a) for a in (theta, X, y))).item()
    assert abs(lml - value) < 1e-9 * max(1.0, abs(value))
    assert nh.rel_error(grad, ref["theta"]) < TOL


def test_gradient_matches_autograd_with_duplicate_points():
    # two equal inputs: r = 0 off the diagonal too, where the length-scale gradient must stay finite
    theta, X, y = problem(8, 2, 3)
    X[3] = X[5]
    lml, grad = gp_log_marginal_likelihood(theta, X, y)
    ref = nh.autograd_gradients(torch_lml, {"theta": theta, "X": X, "y": y}, wrt=["theta"])
    assert np.all(np.isfinite(grad)) and nh.rel_error(grad, ref["theta"]) < TOL


@pytest.mark.parametrize("d", [1, 3])
def test_kernel_matches_torch(d):
    rng = np.random.default_rng(d)
    A, B = rng.uniform(size=(7, d)), rng.uniform(size=(4, d))
    theta = np.r_[0.3, np.log(rng.uniform(0.1, 1.0, d))]
    K, D = matern52_kernel(A, B, theta)
    ref = torch_matern52(*(torch.from_numpy(a) for a in (A, B, theta))).numpy()
    assert K.shape == (7, 4) and D.shape == (7, 4, d)
    np.testing.assert_allclose(K, ref, rtol=1e-12, atol=1e-14)
    K_aa, _ = matern52_kernel(A, A, theta)
    np.testing.assert_allclose(np.diag(K_aa), math.exp(theta[0]))          # k(u, u) = s^2
    assert np.all(np.linalg.eigvalsh(K_aa) > -1e-10)                        # positive semi-definite


def test_normal_cdf_and_expected_improvement_match_torch():
    # down to z = -30: torch's ndtr (1 + erf) loses the lower tail below z = -6, its log_ndtr keeps it
    z = np.linspace(-30, 8, 381)
    np.testing.assert_allclose(normal_cdf(z), torch.special.log_ndtr(torch.from_numpy(z)).exp().numpy(),
                               rtol=1e-12, atol=1e-300)
    rng = np.random.default_rng(0)
    mean, std, best = rng.normal(size=50), rng.uniform(0.01, 2, 50), 0.3
    for xi in (0.0, 0.01, 1.0):
        normal = torch.distributions.Normal(torch.from_numpy(mean), torch.from_numpy(std))
        # E[max(f - t, 0)] by numerical integration of the Gaussian on a fine grid, per point
        grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64)[:, None] * normal.scale + normal.loc
        dens = torch.exp(normal.log_prob(grid))
        ref = torch.trapezoid(torch.clamp(grid - best - xi, min=0) * dens, grid, dim=0).numpy()
        np.testing.assert_allclose(expected_improvement(mean, std, best, xi), ref, rtol=1e-6, atol=1e-9)


def test_expected_improvement_far_below_the_best_is_tiny_positive_and_falls_with_xi():
    """Far below the best the two terms of EI cancel; EI stays >= 0 and falls as xi grows (z from 0 down to -55)."""
    mean, std = np.linspace(-8.0, 0.0, 801), np.full(801, 0.2)
    eis = [expected_improvement(mean, std, 0.0, xi) for xi in (0.001, 0.1, 1.0, 3.0)]
    assert all((ei >= 0).all() for ei in eis)
    assert all((later <= earlier).all() for earlier, later in zip(eis, eis[1:]))
    z = (mean[-400] - 0.001) / 0.2                           # about -20: EI = std * (z Phi(z) + phi(z))
    exact = 0.2 * (z * np.exp(torch.special.log_ndtr(torch.tensor(z)).item()) + np.exp(-z * z / 2) / np.sqrt(2 * np.pi))
    assert abs(eis[0][-400] - exact) <= 1e-9 * exact


def test_input_errors():
    theta, X, y = problem(5, 2, 0)
    with pytest.raises(ValueError, match="theta"):
        gp_log_marginal_likelihood(theta[:-1], X, y)
    with pytest.raises(ValueError, match="y"):
        gp_log_marginal_likelihood(theta, X, y[:-1])
    with pytest.raises(ValueError, match="columns"):
        matern52_kernel(X, X[:, :1], theta[:-1])
    with pytest.raises(ValueError, match="xi"):
        expected_improvement(np.zeros(2), np.ones(2), 0.0, xi=-1)
    with pytest.raises(ValueError, match="unit"):
        unit_to_config([0.5, 1.5, 0.2])
    with pytest.raises(ValueError, match="power of eta"):
        hyperband_brackets(20, 3)


def test_warp_score_is_monotone_and_finite():
    acc = np.array([0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
    w = warp_score(acc)
    assert np.all(np.isfinite(w)) and np.all(np.diff(w) > 0)
