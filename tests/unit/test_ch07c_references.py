"""notebooks/07c_hyperparameter_optimization.ipynb (nndl_helpers.chapters.ch07c) against outside references:
the GP posterior and log marginal likelihood against scikit-learn's GaussianProcessRegressor with the same
kernel and noise; successive halving and Hyperband on a synthetic problem whose learning curves are known;
and the Bayesian optimization against random search and optuna's TPE sampler (skipped without optuna)."""
import math

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from nndl_helpers.chapters.ch07c import (
    bayes_opt,
    fit_gp,
    gp_log_marginal_likelihood,
    gp_posterior,
    hyperband,
    hyperband_brackets,
    incumbent_curve,
    random_search,
    successive_halving,
    unit_to_config,
)


def data(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    y = np.cos(3 * X[:, 0]) + X[:, -1] ** 2 + 0.05 * rng.standard_normal(n)
    return rng, X, y


@pytest.mark.parametrize("n,d", [(1, 1), (5, 1), (12, 3), (30, 3), (20, 4)])
@pytest.mark.parametrize("hyper", [(1.0, 0.3, 1e-2), (2.5, 1.2, 1e-4), (0.4, 0.05, 0.3)])
def test_posterior_matches_sklearn(n, d, hyper):
    s2, ell, noise = hyper
    rng, X, y = data(n, d, n + d)
    ells = ell * rng.uniform(0.5, 2.0, d)
    theta = np.log(np.r_[s2, ells, noise])
    gpr = GaussianProcessRegressor(ConstantKernel(s2, "fixed") * Matern(ells, "fixed", nu=2.5),
                                   alpha=noise, optimizer=None).fit(X, y)
    X_new = np.r_[rng.uniform(size=(100, d)), X[:2]]          # also at training points
    mean, std = gpr.predict(X_new, return_std=True)
    our_mean, our_var = gp_posterior(X, y, X_new, theta)
    assert np.abs(our_mean - mean).max() < 1e-8
    assert np.abs(our_var - std**2).max() < 1e-8


@pytest.mark.parametrize("n,d", [(6, 1), (15, 3)])
def test_log_marginal_likelihood_and_gradient_match_sklearn(n, d):
    rng, X, y = data(n, d, 7)
    theta = np.log(np.r_[1.3, rng.uniform(0.2, 1.0, d), 0.02])
    kernel = ConstantKernel(1.0) * Matern(np.ones(d), nu=2.5) + WhiteKernel(1.0)   # theta = [log s2, log l.., log noise]
    gpr = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(X, y)
    value, grad = gpr.log_marginal_likelihood(theta, eval_gradient=True)
    our_value, our_grad = gp_log_marginal_likelihood(theta, X, y)
    assert abs(our_value - value) < 1e-8 * max(1.0, abs(value))
    np.testing.assert_allclose(our_grad, grad, rtol=1e-7, atol=1e-9)


def test_fit_gp_comes_close_to_sklearns_optimum():
    _, X, y = data(15, 3, 11)
    kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.full(3, 0.3), (1e-2, 10.0), nu=2.5)
              + WhiteKernel(1e-2, (1e-6, 1.0)))
    gpr = GaussianProcessRegressor(kernel, alpha=0.0, n_restarts_optimizer=5, random_state=0).fit(X, y)
    best = gpr.log_marginal_likelihood_value_
    ours = gp_log_marginal_likelihood(fit_gp(X, y, steps=400), X, y)[0]
    assert ours > best - 0.5, (ours, best)


class CurveTrial:
    """A synthetic trial: score(u, t) = q(u) (1 - exp(-t / 4)), known final quality q, resumable like MLPTrial."""

    def __init__(self, u, log):
        self.u, self.epochs, self.log, self.config = np.asarray(u), 0, log, {"u": tuple(u)}

    def train(self, epochs):
        self.log.append((self.config["u"], epochs))
        self.epochs += epochs
        return quality(self.u) * (1 - math.exp(-self.epochs / 4))


def quality(u):
    return 0.9 - 0.8 * float(np.sum((np.asarray(u) - 0.3) ** 2))


def test_successive_halving_resumes_and_keeps_the_best():
    log = []
    points = np.random.default_rng(0).uniform(size=(27, 3))
    history = successive_halving(lambda u, k: CurveTrial(u, log), points, 1, 27, eta=3)
    assert sum(h["epochs"] for h in history) == 27 * 1 + 9 * 2 + 3 * 6 + 1 * 18     # survivors resume
    assert [h["trial_epochs"] for h in history[-1:]] == [27]
    # here early scores rank like the final ones, so the survivor is the best of the 27
    assert np.allclose(history[-1]["u"], max(points, key=quality))


def test_hyperband_spends_its_schedule():
    brackets = hyperband_brackets(27, 3)
    assert [rungs[0] for rungs in brackets] == [(27, 1), (12, 3), (6, 9), (4, 27)]
    assert hyperband_brackets(81, 3)[0][0] == (81, 1) and hyperband_brackets(8, 2)[-1] == [(4, 8)]
    log = []
    history = hyperband(lambda u, k: CurveTrial(u, log), 27, 3, np.random.default_rng(0))
    spent, best = incumbent_curve(history)
    assert spent[-1] == 357 and len({h["config"]["u"] for h in history}) == 49
    assert np.all(np.diff(best) >= 0)


def test_unit_to_config_maps_the_ends_of_the_ranges():
    assert unit_to_config([0, 0, 0]) == {"lr": pytest.approx(1e-4), "width": 8, "weight_decay": pytest.approx(1e-6)}
    assert unit_to_config([1, 1, 1]) == {"lr": pytest.approx(1.0), "width": 256, "weight_decay": pytest.approx(1.0)}


def hartmann3(u):
    """Hartmann-3, negated and scaled into (0, 1) like an accuracy: maximum 0.966 at (0.115, 0.556, 0.853)."""
    alpha = np.array([1.0, 1.2, 3.0, 3.2])
    A = np.array([[3, 10, 30], [0.1, 10, 35], [3, 10, 30], [0.1, 10, 35]])
    P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
    return float(alpha @ np.exp(-np.sum(A * (np.asarray(u) - P) ** 2, axis=1))) / 4


class FunctionTrial:
    def __init__(self, u):
        self.u, self.epochs, self.config = u, 0, {"u": tuple(u)}

    def train(self, epochs):
        self.epochs += epochs
        return hartmann3(self.u)


SEEDS, TRIALS = range(6), 20


def best_of(history):
    return max(h["score"] for h in history)


def test_bayes_opt_beats_random_search_and_matches_optuna_tpe():
    make = lambda u, k: FunctionTrial(u)   # noqa: E731
    ours = [best_of(bayes_opt(make, TRIALS, 1, np.random.default_rng(s), n_init=5)) for s in SEEDS]
    rand = [best_of(random_search(make, TRIALS, 1, np.random.default_rng(s))) for s in SEEDS]
    assert np.median(ours) > np.median(rand) + 0.02, (ours, rand)
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe = []
    for s in SEEDS:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=s))
        study.optimize(lambda t: hartmann3([t.suggest_float(f"u{i}", 0, 1) for i in range(3)]), n_trials=TRIALS)
        tpe.append(study.best_value)
    # the outside reference: on the same budget, our GP-EI does at least as well as TPE (median over seeds)
    assert np.median(ours) >= np.median(tpe) - 0.01, (ours, tpe)
