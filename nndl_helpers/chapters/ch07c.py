"""NumPy code taught in notebooks/07c_hyperparameter_optimization.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math
import time

import numpy as np

import nndl_helpers as nh
from nndl_helpers.chapters.ch03 import accuracy
from nndl_helpers.chapters.ch04a import MLP
from nndl_helpers.chapters.ch07a import Adam

SEARCH_SPACE = {"lr": (1e-4, 1.0), "width": (8, 256), "weight_decay": (1e-6, 1.0)}   # all on a log scale


def unit_to_config(u, space=SEARCH_SPACE):
    """A point u of the unit cube [0, 1]^d -> a configuration dict, coordinate i log-uniform in range i.

    A key named "width" is rounded to an integer. Searches work in the cube; trials see the dict.
    """
    u = np.asarray(u, dtype=np.float64)
    if u.shape != (len(space),) or np.any(u < 0) or np.any(u > 1):
        raise ValueError(f"unit_to_config: u must hold {len(space)} numbers in [0, 1], got {u}")
    config = {}
    for ui, (name, (lo, hi)) in zip(u, space.items()):
        value = math.exp(math.log(lo) + ui * (math.log(hi) - math.log(lo)))
        config[name] = int(round(value)) if name == "width" else value
    return config


class MLPTrial:
    """One configuration of the tuning problem: chapter 4's MLP with one hidden layer, chapter 7's Adam.

    config  dict with lr, width, weight_decay; data  (X_train, y_train, X_val, y_val).
    train(epochs) trains that many more epochs and returns the validation accuracy. The model and the
    optimizer's state persist between calls, so a trial can be resumed; self.epochs counts them all.
    """

    def __init__(self, config, data, seed=0, batch_size=50):
        self.config, self.data, self.batch_size = dict(config), data, int(batch_size)
        self.model = MLP([data[0].shape[1], self.config["width"], 10], "relu", seed=seed, dtype=np.float32)
        self.opt = Adam(lr=self.config["lr"], weight_decay=self.config["weight_decay"])
        self.rng = np.random.default_rng(seed)   # the order of the mini-batches
        self.epochs = 0

    def train(self, epochs):
        X_train, y_train, X_val, y_val = self.data
        with np.errstate(all="ignore"):   # a diverging learning rate gives a bad score, not an error
            for _ in range(int(epochs)):
                for Xb, yb in nh.minibatches(X_train, y_train, self.batch_size, rng=self.rng):
                    self.opt.step(self.model.params, self.model.loss(Xb, yb)[1])
                self.epochs += 1
            return float(accuracy(self.model.predict(X_val), y_val))


def run_trial(history, trial, epochs, u):
    """Train `trial` `epochs` more epochs; append one record (point, config, epochs spent, score) to history."""
    start = time.perf_counter()
    score = trial.train(epochs)
    history.append({"u": np.array(u, dtype=np.float64), "config": trial.config, "epochs": int(epochs),
                    "trial_epochs": trial.epochs, "score": score, "seconds": time.perf_counter() - start,
                    "trial": trial})
    return score


def incumbent_curve(history):
    """Compute spent (cumulative epochs) and the best score so far (the incumbent) after each record."""
    return np.cumsum([h["epochs"] for h in history]), np.maximum.accumulate([h["score"] for h in history])


def grid_search(make_trial, points, epochs):
    """Train make_trial(u, k) for `epochs` at every point u of `points` (in the unit cube); the history."""
    history = []
    for k, u in enumerate(points):
        run_trial(history, make_trial(u, k), epochs, u)
    return history


def random_search(make_trial, n_trials, epochs, rng, dim=3):
    """Random search: n_trials points drawn uniformly in [0, 1]^dim, each trained `epochs`; the history."""
    history = []
    for k in range(n_trials):
        u = rng.uniform(size=dim)
        run_trial(history, make_trial(u, k), epochs, u)
    return history


def matern52_kernel(A, B, theta):
    """Matern-5/2 kernel s^2 (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r), r^2 = sum_d (a_d - b_d)^2 / l_d^2.

    A (n, d), B (m, d); theta = [log s^2, log l_1, ..., log l_d] (one length scale per dimension).
    Returns K (n, m) and the squared scaled differences D (n, m, d), which the gradient needs.
    """
    A, B, theta = np.atleast_2d(A), np.atleast_2d(B), np.asarray(theta, dtype=np.float64)
    if theta.ndim != 1 or A.shape[1] != len(theta) - 1 or B.shape[1] != len(theta) - 1:
        raise ValueError(f"matern52_kernel: A {A.shape} and B {B.shape} need {len(theta) - 1} columns, "
                         f"one per length scale in theta {theta.shape}")
    D = ((A[:, None, :] - B[None, :, :]) / np.exp(theta[1:])) ** 2
    r = np.sqrt(D.sum(-1))
    return math.exp(theta[0]) * (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r), D


def gp_log_marginal_likelihood(theta, X, y):
    """log p(y | X, theta) of a GP (Matern-5/2 kernel plus Gaussian noise) and its gradient in theta.

    theta = [log s^2, log l_1..l_d, log sigma_n^2]; X (n, d); y (n,).
    Returns (lml, grad), grad[j] = 1/2 tr((alpha alpha^T - K^-1) dK/dtheta_j), alpha = K^-1 y.
    """
    theta, y = np.asarray(theta, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n, d = np.shape(X)
    if theta.shape != (d + 2,) or y.shape != (n,):
        raise ValueError(f"gp_log_marginal_likelihood: theta {theta.shape} must be ({d + 2},) and y {y.shape} ({n},)")
    Kf, D = matern52_kernel(X, X, theta[:-1])
    noise = math.exp(theta[-1])
    L = np.linalg.cholesky(Kf + noise * np.eye(n))
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
    lml = -0.5 * y @ alpha - np.log(np.diag(L)).sum() - 0.5 * n * math.log(2 * math.pi)
    L_inv = np.linalg.solve(L, np.eye(n))
    inner = np.outer(alpha, alpha) - L_inv.T @ L_inv                    # alpha alpha^T - K^-1
    r = np.sqrt(D.sum(-1))
    slope = math.exp(theta[0]) * 5 / 3 * (1 + math.sqrt(5) * r) * np.exp(-math.sqrt(5) * r)
    dK = [Kf] + [slope * D[:, :, j] for j in range(d)] + [noise * np.eye(n)]
    return float(lml), np.array([0.5 * np.sum(inner * dKj) for dKj in dK])


GP_BOUNDS = {"log_s2": (math.log(1e-2), math.log(1e2)), "log_l": (math.log(1e-2), math.log(10.0)),
             "log_noise": (math.log(1e-6), 0.0)}


def fit_gp(X, y, theta0=None, steps=150, lr=0.05):
    """theta maximising the log marginal likelihood: `steps` of chapter 7's Adam, clipped to GP_BOUNDS."""
    d = np.shape(X)[1]
    theta = np.r_[0.0, [math.log(0.3)] * d, math.log(1e-2)] if theta0 is None else np.array(theta0, dtype=np.float64)
    lo, hi = (np.r_[GP_BOUNDS["log_s2"][i], [GP_BOUNDS["log_l"][i]] * d, GP_BOUNDS["log_noise"][i]] for i in (0, 1))
    params, opt = {"theta": np.clip(theta, lo, hi)}, Adam(lr=lr)
    for _ in range(steps):
        _, grad = gp_log_marginal_likelihood(params["theta"], X, y)
        opt.step(params, {"theta": -grad})                               # Adam descends: climb the likelihood
        np.clip(params["theta"], lo, hi, out=params["theta"])
    return params["theta"]


def gp_posterior(X, y, X_new, theta):
    """Posterior mean and variance (m,) of the latent f at X_new (m, d) given y at X: two Cholesky solves."""
    Kf, _ = matern52_kernel(X, X, theta[:-1])
    L = np.linalg.cholesky(Kf + math.exp(theta[-1]) * np.eye(len(X)))
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
    K_s, _ = matern52_kernel(X, X_new, theta[:-1])
    V = np.linalg.solve(L, K_s)
    return K_s.T @ alpha, np.maximum(math.exp(theta[0]) - np.sum(V * V, axis=0), 1e-12)


def normal_cdf(z):
    """Standard normal CDF, elementwise (math.erfc, vectorized: NumPy has no erf).

    0.5 * erfc(-z / sqrt 2), not 0.5 * (1 + erf(z / sqrt 2)): below z = -6 the second form subtracts two
    numbers equal to the last bit and returns rounding noise, where erfc keeps full relative precision.
    """
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-z / math.sqrt(2))


def expected_improvement(mean, std, best, xi=0.01):
    """E[max(f - best - xi, 0)] for f ~ N(mean, std^2), elementwise (we maximise f)."""
    if xi < 0:
        raise ValueError(f"expected_improvement: xi must be >= 0, got {xi}")
    std = np.maximum(std, 1e-12)
    gap = mean - best - xi
    z = gap / std
    ei = gap * normal_cdf(z) + std * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return np.maximum(ei, 0.0)          # >= 0 by definition; far below the best the two terms cancel


def warp_score(acc):
    """The quantity the surrogate models: -log(1 - accuracy), the negated log error rate."""
    return -np.log(np.maximum(1.0 - np.asarray(acc, dtype=np.float64), 1e-6))


def propose_next(U, scores, candidates, xi=0.01, theta0=None):
    """One step of Bayesian optimization: fit the GP to the standardized warped scores, maximise EI.

    Returns the chosen candidate, the fitted theta and (mean, std, EI) at every candidate (standardized units).
    """
    z = warp_score(scores)
    y = (z - z.mean()) / (z.std() + 1e-12)
    theta = fit_gp(U, y, theta0)
    mean, var = gp_posterior(U, y, candidates, theta)
    ei = expected_improvement(mean, np.sqrt(var), y.max(), xi)
    return candidates[np.argmax(ei)], theta, (mean, np.sqrt(var), ei)


def bayes_opt(make_trial, n_trials, epochs, rng, dim=3, n_init=5, xi=0.01, n_candidates=2000, candidates=None):
    """GP Bayesian optimization with expected improvement; each trial trains `epochs`. Returns the history.

    The first n_init points are uniform; then each point maximises EI over `candidates` (default: n_candidates
    fresh uniform points per step). Each record also keeps the theta its proposal was made with.
    """
    history, theta = [], None
    for k in range(n_trials):
        if k < n_init:
            u = rng.uniform(size=dim)
        else:
            U, scores = np.array([h["u"] for h in history]), np.array([h["score"] for h in history])
            cand = rng.uniform(size=(n_candidates, dim)) if candidates is None else candidates
            u, theta, _ = propose_next(U, scores, cand, xi, theta)
        run_trial(history, make_trial(u, k), epochs, u)
        history[-1]["gp_theta"] = None if theta is None else theta.copy()
    return history


def hyperband_brackets(max_epochs, eta=3):
    """Hyperband's schedule: for s = s_max..0, the rungs [(configurations, epochs each), ...] of bracket s."""
    s_max = round(math.log(max_epochs, eta))
    if eta < 2 or eta**s_max != max_epochs:
        raise ValueError(f"hyperband_brackets: max_epochs must be a power of eta >= 2, got {max_epochs}, {eta}")
    brackets = []
    for s in range(s_max, -1, -1):
        n, r = math.ceil((s_max + 1) / (s + 1) * eta**s), max_epochs // eta**s
        brackets.append([(max(1, n // eta**i), r * eta**i) for i in range(s + 1)])
    return brackets


def successive_halving(make_trial, points, min_epochs, max_epochs, eta=3, history=None, first_index=0):
    """Train every point min_epochs, keep the best 1/eta, train them to eta times as many epochs, and so on
    up to max_epochs. Survivors resume where they stopped. Appends to and returns `history`."""
    history = [] if history is None else history
    trials = [(u, make_trial(u, first_index + k)) for k, u in enumerate(points)]
    epochs = min_epochs
    while True:
        scores = [run_trial(history, trial, epochs - trial.epochs, u) for u, trial in trials]
        if epochs >= max_epochs or len(trials) == 1:
            return history
        keep = np.argsort(scores, kind="stable")[::-1][:max(1, len(trials) // eta)]
        trials = [trials[i] for i in keep]
        epochs = min(epochs * eta, max_epochs)


def hyperband(make_trial, max_epochs, eta, rng, dim=3):
    """One Hyperband iteration: successive halving in every bracket, most aggressive first; the history."""
    history, first_index = [], 0
    for rungs in hyperband_brackets(max_epochs, eta):
        (n, r) = rungs[0]
        successive_halving(make_trial, rng.uniform(size=(n, dim)), r, max_epochs, eta, history, first_index)
        first_index += n
    return history
