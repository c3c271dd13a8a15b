"""NumPy code taught in notebooks/10a_model_independent_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def bagged_regressor(fit, x, y, *, n_bags, frac=1.0, rng):
    """Bagging (bootstrap aggregating) for regression: fit(x, y) -> predict, n_bags times on bootstrap samples
    of round(frac * N) draws with replacement from (x, y); returns the averaged predictor x_new -> mean prediction."""
    if n_bags < 1 or not 0 < frac <= 1:
        raise ValueError(f"need n_bags >= 1 and 0 < frac <= 1, got n_bags={n_bags}, frac={frac}")
    m = max(2, int(round(frac * len(x))))
    predictors = [fit(x[i], y[i]) for i in (rng.integers(0, len(x), m) for _ in range(n_bags))]
    return lambda x_new: np.mean([predict(x_new) for predict in predictors], axis=0)


def check_classification_data(X, y):
    """X as a 2-D float array (N, D) and y as integer class labels (N,) in 0..C-1, or a ValueError."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or len(X) == 0 or y.shape != (len(X),):
        raise ValueError(f"expected X of shape (N, D) with N >= 1 and y of shape (N,), got {X.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"y must hold integer class labels 0, 1, ..., C-1, got dtype {y.dtype}, min {y.min()}")
    return X, y


class DecisionStump:
    """A decision stump (决策树桩): x[feature] <= threshold -> classes[0], else classes[1], chosen to minimise
    the weighted error over n_thresholds quantile thresholds per feature. Works for any number of classes."""

    def __init__(self, n_thresholds=16):
        self.n_thresholds = int(n_thresholds)

    def fit(self, X, y, sample_weight=None, n_classes=None):
        X, y = check_classification_data(X, y)
        (n, d), c = X.shape, int(n_classes or y.max() + 1)
        w = np.full(n, 1.0 / n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        T = np.quantile(X, np.linspace(0, 1, self.n_thresholds + 2)[1:-1], axis=0).T   # (D, B) thresholds
        B = T.shape[1]
        bins = (X[:, :, None] > T[None]).sum(axis=2)                                     # (N, D) in 0..B
        index = (np.arange(d) * (B + 1) + bins) * c + y[:, None]                         # (feature, bin, class)
        counts = np.bincount(index.ravel(), weights=np.repeat(w, d), minlength=d * (B + 1) * c)
        left = np.cumsum(counts.reshape(d, B + 1, c), axis=1)[:, :-1]                    # weight with x <= t_b
        right = left[:, -1:] + counts.reshape(d, B + 1, c)[:, -1:] - left                 # weight with x > t_b
        f, b = np.unravel_index(np.argmax(left.max(axis=2) + right.max(axis=2)), (d, B))   # most weight right
        self.feature, self.threshold = int(f), float(T[f, b])
        self.classes = (int(left[f, b].argmax()), int(right[f, b].argmax()))
        return self

    def predict(self, X):
        return np.where(np.asarray(X)[:, self.feature] > self.threshold, self.classes[1], self.classes[0])


class AdaBoostSAMME:
    """AdaBoost for K classes by SAMME (Zhu et al., 2009), as derived above.

    make_learner()  a new weak learner with fit(X, y, sample_weight=w) and predict(X) (a DecisionStump, a
                    scikit-learn tree, an MLPLearner, ...). Round m: fit on the weights w, weighted error eps_m,
                    alpha_m = log((1 - eps_m) / eps_m) + log(K - 1), w <- w * exp(alpha_m * [wrong]), renormalise.
    Stops early if a learner is perfect (eps = 0) or no better than chance (eps >= 1 - 1/K, discarded).
    learners, alphas, errors  one entry per round kept.
    """

    def __init__(self, make_learner=DecisionStump, n_rounds=50):
        if int(n_rounds) < 1:
            raise ValueError(f"n_rounds must be >= 1, got {n_rounds}")
        self.make_learner, self.n_rounds = make_learner, int(n_rounds)

    def fit(self, X, y):
        X, y = check_classification_data(X, y)
        self.n_classes = int(y.max() + 1)
        w = np.full(len(X), 1.0 / len(X))
        self.learners, self.alphas, self.errors = [], [], []
        for _ in range(self.n_rounds):
            learner = self.make_learner()
            learner.fit(X, y, sample_weight=w)
            wrong = learner.predict(X) != y
            error = float(np.sum(w * wrong) / np.sum(w))
            if error >= 1 - 1 / self.n_classes:          # no better than chance: stop, keep what we have
                break
            alpha = 1.0 if error <= 0 else np.log((1 - error) / error) + np.log(self.n_classes - 1)
            self.learners.append(learner)
            self.alphas.append(float(alpha))
            self.errors.append(error)
            if error <= 0:                                # perfect on the training set: nothing left to fix
                break
            w = w * np.exp(alpha * wrong)
            w /= w.sum()
        if not self.learners:
            raise ValueError("the first weak learner is no better than chance; boosting cannot start")
        return self

    def staged_predict(self, X):
        """The ensemble's predictions after 1, 2, ..., M rounds (a generator)."""
        votes = np.zeros((len(X), self.n_classes))
        for learner, alpha in zip(self.learners, self.alphas):
            votes[np.arange(len(X)), learner.predict(X)] += alpha
            yield votes.argmax(axis=1)

    def predict(self, X):
        return list(self.staged_predict(X))[-1]


from nndl_helpers.chapters.ch04a import MLP
from nndl_helpers.chapters.ch07a import Adam


class MLPLearner:
    """Chapter 4's MLP as a learner for ensembles and self-training: fit(X, y, sample_weight=None) trains a new
    MLP([D, *hidden, C], "relu") with Adam for `steps` mini-batches drawn with replacement; sample weights
    (AdaBoost's) are used by resampling N points with probabilities proportional to them."""

    def __init__(self, hidden=(64,), steps=300, lr=2e-3, batch_size=64, l2=0.0, seed=0):
        self.hidden, self.steps, self.lr, self.batch_size, self.l2, self.seed = tuple(hidden), steps, lr, batch_size, l2, seed

    def fit(self, X, y, sample_weight=None, n_classes=None):
        X, y = check_classification_data(X, y)
        rng = np.random.default_rng(self.seed)
        if sample_weight is not None:
            p = np.asarray(sample_weight, dtype=np.float64)
            resampled = rng.choice(len(X), size=len(X), p=p / p.sum())
            X, y = X[resampled], y[resampled]
        self.model = MLP([X.shape[1], *self.hidden, int(n_classes or 10)], "relu", l2=self.l2, seed=self.seed,
                         dtype=np.float32)
        optimizer = Adam(lr=self.lr)
        for _ in range(self.steps):
            batch = rng.integers(0, len(X), min(self.batch_size, len(X)))
            optimizer.step(self.model.params, self.model.loss(X[batch], y[batch])[1])
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(X)

    def predict(self, X):
        return self.model.predict(X)


def learner_probabilities(learner, X, n_classes):
    """learner.predict_proba(X) as (N, n_classes); a scikit-learn learner that saw only some classes in its
    bootstrap sample has columns for those only (learner.classes_), which go to their places."""
    proba = np.asarray(learner.predict_proba(X), dtype=np.float64)
    if proba.shape[1] != n_classes:
        full = np.zeros((len(X), n_classes))
        full[:, np.asarray(learner.classes_)] = proba
        proba = full
    return proba


class Bagging:
    """Bagging (bootstrap aggregating) classifier: n_estimators learners from make_learner(), each fitted on
    round(max_samples * N) draws with replacement (or on the index arrays `samples` given to fit); the
    prediction averages their class probabilities (soft voting)."""

    def __init__(self, make_learner, n_estimators=10, max_samples=1.0, seed=0):
        if int(n_estimators) < 1 or not 0 < max_samples <= 1:
            raise ValueError(f"need n_estimators >= 1 and 0 < max_samples <= 1, got {n_estimators}, {max_samples}")
        self.make_learner, self.n_estimators, self.max_samples, self.seed = make_learner, int(n_estimators), max_samples, seed

    def fit(self, X, y, samples=None, n_classes=None):
        X, y = check_classification_data(X, y)
        self.n_classes, rng = int(n_classes or y.max() + 1), np.random.default_rng(self.seed)
        m = max(1, int(round(self.max_samples * len(X))))
        self.samples = samples if samples is not None else [rng.integers(0, len(X), m) for _ in range(self.n_estimators)]
        self.learners = [self.make_learner().fit(X[i], y[i]) for i in self.samples]
        return self

    def staged_predict_proba(self, X):
        """The ensemble's class probabilities after 1, 2, ..., M learners (a generator)."""
        total = np.zeros((len(X), self.n_classes))
        for m, learner in enumerate(self.learners, start=1):
            total += learner_probabilities(learner, X, self.n_classes)
            yield total / m

    def staged_predict(self, X):
        return (p.argmax(axis=1) for p in self.staged_predict_proba(X))

    def predict_proba(self, X):
        return list(self.staged_predict_proba(X))[-1]

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)


def self_training(make_learner, X_lab, y_lab, X_unlab, *, threshold=0.9, rounds=3, n_classes=None, initial=None):
    """Self-training (自训练): fit make_learner() on the labelled data (or start from `initial`, a learner already
    fitted on them), then `rounds` times: pseudo-label every unlabelled sample whose largest predicted
    probability is >= threshold, and refit a new learner on the labelled data plus all of them.
    Returns the last learner and a list with, per round, {"chosen": indices, "pseudo": labels, "learner": ...}."""
    X_lab, y_lab = check_classification_data(X_lab, y_lab)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    c = int(n_classes or y_lab.max() + 1)
    learner = initial if initial is not None else make_learner().fit(X_lab, y_lab, n_classes=c)
    history = []
    for _ in range(rounds):
        proba = learner_probabilities(learner, X_unlab, c)
        chosen = np.flatnonzero(proba.max(axis=1) >= threshold)
        pseudo = proba[chosen].argmax(axis=1)
        learner = make_learner().fit(np.concatenate([X_lab, X_unlab[chosen]]), np.concatenate([y_lab, pseudo]),
                                     n_classes=c)
        history.append({"chosen": chosen, "pseudo": pseudo, "learner": learner})
    return learner, history


def fisher_diagonal(model, X, rng):
    """Diagonal of the Fisher information of a classifier (chapter 4's MLP with a softmax output) at its current
    params: F_i = mean over the rows x of X of (d log p(y~ | x) / d theta_i)^2, y~ drawn from the model's own
    p(. | x). One backward pass per sample, with batch size 1. Returns a dict keyed like model.params (float64)."""
    if getattr(model, "output", None) != "softmax" or getattr(model, "l2", 0.0):
        raise ValueError("fisher_diagonal needs an MLP with output='softmax' and l2=0 (its loss is then -log p)")
    fisher = {k: np.zeros(p.shape) for k, p in model.params.items()}
    for x, p in zip(np.asarray(X), model.predict_proba(X)):
        y_tilde = rng.choice(len(p), p=p / p.sum())
        _, grads = model.loss(x[None], np.array([y_tilde]))     # the loss of one sample is -log p(y~ | x)
        for k, g in grads.items():
            fisher[k] += g.astype(np.float64) ** 2
    return {k: f / len(X) for k, f in fisher.items()}


def ewc_penalty(params, anchor, fisher, strength):
    """Elastic weight consolidation: (strength / 2) sum_i F_i (theta_i - theta*_i)^2 over every array of params
    (anchor: theta* after the old task, fisher: F, both keyed like params). Returns (penalty, grads keyed like
    params), grads[k] = strength * F[k] * (params[k] - anchor[k])."""
    if strength < 0:
        raise ValueError(f"the EWC strength must be >= 0, got {strength}")
    penalty, grads = 0.0, {}
    for k, theta in params.items():
        if np.shape(anchor[k]) != np.shape(theta) or np.shape(fisher[k]) != np.shape(theta):
            raise ValueError(f"ewc_penalty: {k} has shape {np.shape(theta)}, its anchor {np.shape(anchor[k])} "
                             f"and its Fisher diagonal {np.shape(fisher[k])}")
        diff = theta - anchor[k]
        penalty += 0.5 * strength * float(np.sum(fisher[k] * diff * diff))
        grads[k] = (strength * fisher[k] * diff).astype(theta.dtype)
    return penalty, grads
