"""Notebook 10a's ensembles (nndl_helpers.chapters.ch10a) against scikit-learn, from the same data.

AdaBoostSAMME given scikit-learn's depth-1 trees (with the seeds AdaBoostClassifier drew) must reproduce
AdaBoostClassifier round by round: estimator errors, weights and staged predictions. Bagging given
BaggingClassifier's bootstrap samples and tree seeds must reproduce its probabilities. Our own decision stump
must find the split of smallest weighted error (checked by brute force), and self-training and bagged
regression must do what their docstrings say.
"""
import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.ensemble import AdaBoostClassifier, BaggingClassifier
from sklearn.tree import DecisionTreeClassifier

from nndl_helpers.chapters import ch10a as ch10


def _data(n_classes, seed):
    if n_classes == 10:
        X, y = load_digits(return_X_y=True)
        return X[:600].astype(np.float64), y[:600].astype(np.int64)
    X, y = make_classification(300, 8, n_informative=5, n_classes=n_classes, n_clusters_per_class=1, random_state=seed)
    return X, y.astype(np.int64)


@pytest.mark.parametrize("n_classes, rounds", [(2, 30), (3, 40), (10, 60)])
@pytest.mark.parametrize("seed", [0, 1])
def test_adaboost_samme_matches_sklearn(n_classes, rounds, seed):
    X, y = _data(n_classes, seed)
    sk = AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=rounds, random_state=seed).fit(X, y)
    seeds = iter([tree.random_state for tree in sk.estimators_])
    ours = ch10.AdaBoostSAMME(lambda: DecisionTreeClassifier(max_depth=1, random_state=next(seeds)), rounds).fit(X, y)
    m = len(sk.estimators_)
    assert len(ours.learners) == m
    np.testing.assert_allclose(ours.alphas, sk.estimator_weights_[:m], rtol=1e-10)
    np.testing.assert_allclose(ours.errors, sk.estimator_errors_[:m], rtol=1e-10, atol=1e-14)
    for a, b in zip(ours.staged_predict(X), sk.staged_predict(X)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_bagging_matches_sklearn_with_its_samples(n_classes):
    X, y = _data(n_classes, 3)
    sk = BaggingClassifier(DecisionTreeClassifier(), n_estimators=7, random_state=0).fit(X, y)
    seeds = iter([tree.random_state for tree in sk.estimators_])
    ours = ch10.Bagging(lambda: DecisionTreeClassifier(random_state=next(seeds)), 7).fit(X, y, samples=sk.estimators_samples_)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))


def test_decision_stump_minimises_the_weighted_error():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((80, 4)), rng.integers(0, 3, 80)
    w = rng.uniform(0.1, 1, 80)
    w /= w.sum()
    stump = ch10.DecisionStump(n_thresholds=8).fit(X, y, sample_weight=w)
    error = np.sum(w * (stump.predict(X) != y))
    thresholds = np.quantile(X, np.linspace(0, 1, 10)[1:-1], axis=0).T
    best = min(np.sum(w * (np.where(X[:, f] > t, b, a) != y))
               for f in range(4) for t in thresholds[f] for a in range(3) for b in range(3))
    assert error <= best + 1e-12


def test_adaboost_with_our_stumps_learns():
    X, y = _data(3, 0)
    model = ch10.AdaBoostSAMME(ch10.DecisionStump, 40).fit(X, y)
    errors = [np.mean(p != y) for p in model.staged_predict(X)]
    assert errors[-1] < 0.5 * errors[0] and all(a > 0 for a in model.alphas)


def test_self_training_adds_confident_pseudo_labels():
    X, y = _data(2, 4)
    lab = np.concatenate([np.flatnonzero(y == k)[:5] for k in range(2)])
    unl = np.setdiff1d(np.arange(len(X)), lab)
    make = lambda: ch10.MLPLearner(hidden=(8,), steps=100, lr=1e-2, seed=0)
    _, history = ch10.self_training(make, X[lab], y[lab], X[unl], threshold=0.9, rounds=2, n_classes=2)
    assert len(history) == 2 and len(history[0]["chosen"]) > 0
    assert np.mean(history[0]["pseudo"] == y[unl][history[0]["chosen"]]) > 0.7


def test_bagged_regressor_averages_bootstrap_fits():
    x, y = np.linspace(0, 1, 10), np.arange(10.0)
    mean_fit = lambda xb, yb: (lambda x_new: np.full(len(x_new), yb.mean()))
    predict = ch10.bagged_regressor(mean_fit, x, y, n_bags=200, rng=np.random.default_rng(0))
    assert abs(predict(x)[0] - y.mean()) < 0.3
    with pytest.raises(ValueError):
        ch10.bagged_regressor(mean_fit, x, y, n_bags=0, rng=np.random.default_rng(0))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="shape"):
        ch10.DecisionStump().fit(np.zeros((4, 2, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="integer"):
        ch10.AdaBoostSAMME().fit(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError):
        ch10.Bagging(ch10.DecisionStump, 0)
