"""Parity tests for notebooks/03_linear_models.ipynb: every NumPy backward against torch.autograd.

The functions are imported from ``nndl_helpers.chapters.ch03``, which is generated from the notebook's
``#@save`` cells; the last test proves the module still matches the notebook.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers import nbtools
from nndl_helpers.chapters.ch03 import (
    accuracy,
    binary_cross_entropy_with_logits,
    confusion_matrix,
    hinge_loss,
    linear_backward,
    linear_forward,
    log_softmax,
    one_hot,
    perceptron_fit,
    perceptron_loss,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    softplus,
)

TOL = 1e-6
SEEDS = [0, 1, 2]


def t(a):
    return torch.as_tensor(np.asarray(a))


def autograd_dz(torch_loss, z, *args):
    """Loss value and gradient w.r.t. z of a torch loss, in float64."""
    zt = t(z).double().requires_grad_(True)
    loss = torch_loss(zt, *[t(a) for a in args])
    (grad,) = torch.autograd.grad(loss, zt)
    return loss.item(), grad.numpy()


def signed_labels(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


# --------------------------------------------------------------------------- linear layer


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 4, 3), (7, 3, 1), (2, 9, 10), (13, 1, 4)])
@pytest.mark.parametrize("seed", SEEDS)
def test_linear_backward_matches_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    N, D, C = shape
    X, W, b = rng.normal(size=(N, D)), rng.normal(size=(D, C)), rng.normal(size=C)
    dout = rng.normal(size=(N, C))
    z, cache = linear_forward(X, W, b)
    np.testing.assert_allclose(z, X @ W + b)
    dX, dW, db = linear_backward(dout, cache)
    ref = nh.autograd_gradients(lambda X, W, b: X @ W + b, {"X": X, "W": W, "b": b}, dout=dout)
    for name, got in [("X", dX), ("W", dW), ("b", db)]:
        assert got.shape == ref[name].shape
        assert nh.rel_error(got, ref[name]) < TOL, name


@pytest.mark.parametrize("N,D", [(1, 1), (6, 4), (11, 7)])
def test_linear_backward_with_a_weight_vector_and_scalar_bias(N, D):
    rng = np.random.default_rng(N * D)
    X, w, b = rng.normal(size=(N, D)), rng.normal(size=D), np.array(0.7)
    dout = rng.normal(size=N)
    z, cache = linear_forward(X, w, b)
    assert z.shape == (N,)
    dX, dw, db = linear_backward(dout, cache)
    ref = nh.autograd_gradients(lambda X, w, b: X @ w + b, {"X": X, "w": w, "b": b}, dout=dout)
    assert db.shape == ()
    for got, name in [(dX, "X"), (dw, "w"), (db, "b")]:
        assert nh.rel_error(got, ref[name]) < TOL, name


@pytest.mark.parametrize("X_shape,W_shape,b_shape,match", [
    ((5,), (5, 2), (2,), "do not fit"), ((5, 3), (4, 2), (2,), "do not fit"), ((5, 3), (3, 2, 1), (2,), "do not fit"),
    ((5, 3), (3, 2), (3,), "b has shape"), ((5, 3), (3,), (2,), "b has shape")])
def test_linear_forward_names_the_shapes_it_rejects(X_shape, W_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        linear_forward(np.ones(X_shape), np.ones(W_shape), np.ones(b_shape))


def test_linear_backward_rejects_a_gradient_of_the_wrong_shape():
    _, cache = linear_forward(np.ones((4, 3)), np.ones((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"dz has shape \(4, 3\), but z has shape \(4, 2\)"):
        linear_backward(np.ones((4, 3)), cache)
    _, cache = linear_forward(np.ones((4, 3)), np.ones(3), 0.0)
    with pytest.raises(ValueError, match="dz has shape"):
        linear_backward(np.ones((4, 1)), cache)


# --------------------------------------------------------------------------- forward functions


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])
def test_sigmoid_softplus_softmax_log_softmax_match_torch(scale):
    rng = np.random.default_rng(3)
    z = scale * rng.normal(size=(6, 5))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(sigmoid(z), torch.sigmoid(t(z)).numpy(), rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(softplus(z), torch.logaddexp(torch.zeros(()).double(), t(z)).numpy(), rtol=1e-12)
        np.testing.assert_allclose(softmax(z), torch.softmax(t(z), dim=1).numpy(), rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(log_softmax(z), torch.log_softmax(t(z), dim=1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0)


def test_softmax_of_one_vector_and_float32_is_kept():
    z = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    p = softmax(z)
    assert p.dtype == np.float32 and p.shape == (3,)
    np.testing.assert_allclose(p, torch.softmax(t(z), dim=0).numpy(), rtol=1e-6)
    assert sigmoid(z).dtype == np.float32


# --------------------------------------------------------------------------- binary cross-entropy


@pytest.mark.parametrize("shape", [(1,), (7,), (5, 3), (16, 1)])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("soft_targets", [False, True])
def test_bce_with_logits_matches_autograd(shape, seed, soft_targets):
    rng = np.random.default_rng(seed)
    z = 3 * rng.normal(size=shape)
    y = rng.random(size=shape) if soft_targets else rng.integers(0, 2, size=shape).astype(np.float64)
    loss, dz = binary_cross_entropy_with_logits(z, y)
    ref_loss, ref_dz = autograd_dz(F.binary_cross_entropy_with_logits, z, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert dz.shape == z.shape
    assert nh.rel_error(dz, ref_dz) < TOL


@pytest.mark.parametrize("scale", [1e2, 1e3, 1e5, 1e300])
def test_bce_with_huge_logits_is_finite_and_matches_autograd(scale):
    rng = np.random.default_rng(7)
    z = scale * rng.choice([-1.0, 1.0], size=12) * rng.uniform(0.5, 1.0, size=12)
    y = rng.integers(0, 2, size=12).astype(np.float64)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dz = binary_cross_entropy_with_logits(z, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    if scale <= 1e5:  # beyond that torch and NumPy both give inf/huge values differently rounded
        ref_loss, ref_dz = autograd_dz(F.binary_cross_entropy_with_logits, z, y)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        assert nh.rel_error(dz, ref_dz) < TOL


def test_bce_exact_values_at_extremes():
    loss, dz = binary_cross_entropy_with_logits(np.array([800.0, -800.0]), np.array([0.0, 1.0]))
    assert loss == 800.0
    np.testing.assert_array_equal(dz, [0.5, -0.5])
    loss, dz = binary_cross_entropy_with_logits(np.array([800.0, -800.0]), np.array([1.0, 0.0]))
    assert loss == 0.0 and np.all(dz == 0.0)


def test_bce_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        binary_cross_entropy_with_logits(np.zeros((4, 1)), np.zeros(4))


# --------------------------------------------------------------------------- softmax cross-entropy


@pytest.mark.parametrize("shape", [(1, 2), (4, 3), (13, 10), (8, 1), (3, 17)])
@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_cross_entropy_matches_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    N, C = shape
    z = 2 * rng.normal(size=shape)
    y = rng.integers(0, C, size=N)
    loss, dz = softmax_cross_entropy(z, y)
    ref_loss, ref_dz = autograd_dz(F.cross_entropy, z, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-15)
    assert dz.shape == z.shape
    assert nh.rel_error(dz, ref_dz) < TOL
    np.testing.assert_allclose(dz, (softmax(z) - one_hot(y, C)) / N, atol=1e-15)


@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4, 1e6])
@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_cross_entropy_with_huge_logits(scale, seed):
    rng = np.random.default_rng(seed)
    z = scale * rng.normal(size=(9, 6))
    y = rng.integers(0, 6, size=9)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dz = softmax_cross_entropy(z, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    ref_loss, ref_dz = autograd_dz(F.cross_entropy, z, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert nh.rel_error(dz, ref_dz) < TOL


def test_softmax_cross_entropy_exact_on_the_notebook_example():
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]])
    loss, dz = softmax_cross_entropy(z, np.array([0, 2]))
    assert loss == 1000.0
    np.testing.assert_array_equal(dz, [[0.0, 0.0, 0.0], [0.5, 0.0, -0.5]])


def test_softmax_cross_entropy_keeps_float32():
    z = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    _, dz = softmax_cross_entropy(z, np.array([0, 1, 2, 3, 0]))
    assert dz.dtype == np.float32


@pytest.mark.parametrize("z,y,match", [
    (np.zeros(3), np.array([0, 1, 2]), "must be \\(N, C\\)"),
    (np.zeros((3, 2)), np.array([0.0, 1.0, 1.0]), "integers"),
    (np.zeros((3, 2)), np.array([0, 1]), "integers of shape"),
    (np.zeros((3, 2)), np.array([0, 1, 2]), "must lie in"),
    (np.zeros((3, 2)), np.array([0, -1, 1]), "must lie in"),
])
def test_softmax_cross_entropy_rejects_bad_input(z, y, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(z, y)


# --------------------------------------------------------------------------- hinge and perceptron losses


@pytest.mark.parametrize("shape", [(1,), (6,), (5, 3), (20, 1)])
@pytest.mark.parametrize("seed", SEEDS)
def test_hinge_and_perceptron_losses_match_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    z = 2 * rng.normal(size=shape)
    y = signed_labels(rng, shape)
    for ours, theirs in [(hinge_loss, lambda z, y: torch.clamp(1 - y * z, min=0).mean()),
                         (perceptron_loss, lambda z, y: torch.relu(-y * z).mean())]:
        loss, dz = ours(z, y)
        ref_loss, ref_dz = autograd_dz(theirs, z, y)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-15)
        assert nh.rel_error(dz, ref_dz) < TOL, ours.__name__


def test_perceptron_loss_moves_a_zero_model():
    # at the kink y z = 0 the perceptron rule still fires: subgradient -y, not 0
    loss, dz = perceptron_loss(np.zeros(4), np.array([1.0, -1.0, 1.0, 1.0]))
    assert loss == 0.0
    np.testing.assert_array_equal(dz, [-0.25, 0.25, -0.25, -0.25])


@pytest.mark.parametrize("loss_fn", [hinge_loss, perceptron_loss])
def test_signed_losses_reject_zero_one_labels_and_bad_shapes(loss_fn):
    with pytest.raises(ValueError, match="-1 or \\+1"):
        loss_fn(np.zeros(3), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        loss_fn(np.zeros((3, 1)), np.ones(3))


# --------------------------------------------------------------------------- whole models


@pytest.mark.parametrize("N,D", [(1, 1), (8, 3), (15, 6)])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_logistic_regression_gradients_match_autograd(N, D, lam):
    rng = np.random.default_rng(N + D)
    X, w, b = rng.normal(size=(N, D)), rng.normal(size=D), np.array(0.2)
    y = rng.integers(0, 2, size=N).astype(np.float64)
    z, cache = linear_forward(X, w, b)
    _, dz = binary_cross_entropy_with_logits(z, y)
    dX, dw, db = linear_backward(dz, cache)
    ref = nh.autograd_gradients(
        lambda X, w, b, y: F.binary_cross_entropy_with_logits(X @ w + b, y) + 0.5 * lam * (w * w).sum(),
        {"X": X, "w": w, "b": b, "y": y}, wrt=["X", "w", "b"])
    assert nh.rel_error(dX, ref["X"]) < TOL
    assert nh.rel_error(dw + lam * w, ref["w"]) < TOL
    assert nh.rel_error(db, ref["b"]) < TOL


@pytest.mark.parametrize("N,D,C", [(1, 2, 2), (9, 5, 3), (20, 7, 10)])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_softmax_regression_gradients_match_autograd(N, D, C, lam):
    rng = np.random.default_rng(N + D + C)
    X, W, b = rng.normal(size=(N, D)), rng.normal(size=(D, C)), rng.normal(size=C)
    y = rng.integers(0, C, size=N)
    z, cache = linear_forward(X, W, b)
    _, dz = softmax_cross_entropy(z, y)
    dX, dW, db = linear_backward(dz, cache)
    ref = nh.autograd_gradients(
        lambda X, W, b, y: F.cross_entropy(X @ W + b, y) + 0.5 * lam * (W * W).sum(),
        {"X": X, "W": W, "b": b, "y": y}, wrt=["X", "W", "b"])
    assert nh.rel_error(dX, ref["X"]) < TOL
    assert nh.rel_error(dW + lam * W, ref["W"]) < TOL
    assert nh.rel_error(db, ref["b"]) < TOL


def test_softmax_cross_entropy_gradient_carries_the_batch_mean():
    """The loss is a mean over the batch, so dz is (softmax(z) - one_hot(y)) / N, with the 1/N.

    Repeating the batch twice keeps the mean loss and must halve every row of dz: a backward that
    forgot the 1/N (or summed the loss) would not.
    """
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    loss, dz = softmax_cross_entropy(z, y)
    np.testing.assert_allclose(dz, (softmax(z) - one_hot(y, 4)) / len(z), rtol=1e-12, atol=1e-15)
    _, ref_dz = autograd_dz(F.cross_entropy, z, y)
    assert nh.rel_error(dz, ref_dz) < TOL

    loss2, dz2 = softmax_cross_entropy(np.vstack([z, z]), np.concatenate([y, y]))
    assert loss2 == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(dz2, np.vstack([dz, dz]) / 2, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- perceptron and utilities


def test_perceptron_converges_on_separable_data_within_novikoffs_bound():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    w_true, b_true = np.array([1.0, -2.0]), 0.3
    margin = X @ w_true + b_true
    keep = np.abs(margin) > 0.5                 # separable with a known margin
    X, y = X[keep], np.sign(margin[keep])
    fit = perceptron_fit(X, y, epochs=1000, rng=np.random.default_rng(1))
    assert fit["mistakes"][-1] == 0
    assert np.all(np.sign(X @ fit["w"] + fit["b"]) == y)
    w_star = np.r_[w_true, b_true] / np.linalg.norm(np.r_[w_true, b_true])
    X_hat = np.c_[X, np.ones(len(X))]
    gamma = np.min(y * (X_hat @ w_star))
    R = np.max(np.linalg.norm(X_hat, axis=1))
    assert sum(fit["mistakes"]) <= R ** 2 / gamma ** 2
    assert len(fit["snapshots"]) == len(fit["mistakes"])


def test_perceptron_max_steps_and_label_check():
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    assert perceptron_fit(X, y, epochs=50, max_steps=7)["steps"] == 7
    with pytest.raises(ValueError, match="-1 or \\+1"):
        perceptron_fit(X, (y > 0).astype(float))


def test_one_hot_accuracy_confusion_matrix():
    y = np.array([0, 2, 1, 2])
    np.testing.assert_array_equal(one_hot(y), np.eye(3)[y])
    assert one_hot(y, 5).shape == (4, 5)
    scores = np.array([[2.0, 1, 0], [0, 0, 3], [0, 1, 0], [5, 0, 0]])
    assert accuracy(scores, y) == 0.75
    assert accuracy(np.array([0, 2, 1, 0]), y) == 0.75
    counts = confusion_matrix(y, scores.argmax(axis=1), 3)
    np.testing.assert_array_equal(counts, [[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    assert counts.sum() == len(y)
    with pytest.raises(ValueError, match="accuracy"):
        accuracy(scores, y[:3])
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        confusion_matrix(y, np.array([0, 3, 1, 2]), 3)
    with pytest.raises(ValueError, match="must both be"):
        confusion_matrix(y, y[:2], 3)


def test_module_matches_the_notebook():
    notebook = Path(nbtools.NOTEBOOKS) / "03_linear_models.ipynb"
    assert (Path(nbtools.PACKAGE) / "ch03.py").read_text(encoding="utf-8") == nbtools.render_module(notebook), \
        "nndl_helpers/chapters/ch03.py is stale: run python -m nndl_helpers.nbtools export"
