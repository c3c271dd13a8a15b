"""Chapter 2 (linear regression): the hand-written gradients against torch.autograd, and the closed forms.

Everything tested here is imported from ``nndl_helpers.chapters.ch02``, the module exported from the
notebook's ``#@save`` cells, so the tests check the code the notebook teaches.
"""
import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers.chapters.ch02 import (
    fit_polynomial_ridge,
    least_squares,
    minibatch_sgd,
    linear_regression_loss,
    polynomial_features,
    ridge_closed_form,
    ridge_regression_loss,
    standardize,
)

TOL = 1e-6
SHAPES = [(1, 1), (2, 1), (5, 3), (7, 1), (13, 4), (31, 9), (64, 17)]  # (N, D), odd sizes included


def make_problem(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, size=d)   # features on different scales
    y = rng.normal(size=n) * 3.0
    w = rng.normal(size=d)
    b = float(rng.normal())
    return X, y, w, b


def torch_mse(X, y, w, b):
    return ((X @ w + b - y) ** 2).mean()


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_linear_regression_loss_matches_autograd(n, d, seed):
    X, y, w, b = make_problem(n, d, seed)
    loss, dw, db = linear_regression_loss(X, y, w, b)
    ref = nh.autograd_gradients(torch_mse, {"X": X, "y": y, "w": w, "b": np.array(b)}, wrt=["w", "b"])
    assert nh.rel_error(dw, ref["w"]) < TOL
    assert nh.rel_error(db, ref["b"]) < TOL
    assert loss == pytest.approx(float(torch_mse(*map(torch.as_tensor, (X, y, w, np.array(b))))), rel=1e-12)
    assert dw.shape == (d,) and isinstance(db, float) and isinstance(loss, float)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("lam", [0.0, 1e-3, 0.7, 25.0])
def test_ridge_regression_loss_matches_autograd(n, d, lam):
    X, y, w, b = make_problem(n, d, seed=n + d)

    def torch_ridge(X, y, w, b):
        return torch_mse(X, y, w, b) + lam * (w @ w)

    loss, dw, db = ridge_regression_loss(X, y, w, b, lam)
    ref = nh.autograd_gradients(torch_ridge, {"X": X, "y": y, "w": w, "b": np.array(b)}, wrt=["w", "b"])
    assert nh.rel_error(dw, ref["w"]) < TOL
    assert nh.rel_error(db, ref["b"]) < TOL
    assert loss == pytest.approx(linear_regression_loss(X, y, w, b)[0] + lam * w @ w, rel=1e-12)


def test_linear_regression_loss_matches_centred_differences():
    X, y, w, b = make_problem(9, 4, seed=3)
    b_arr = np.array([b])
    _, dw, db = linear_regression_loss(X, y, w, b)
    num_w = nh.numerical_gradient(lambda: linear_regression_loss(X, y, w, b_arr[0])[0], w)
    num_b = nh.numerical_gradient(lambda: linear_regression_loss(X, y, w, b_arr[0])[0], b_arr)
    assert nh.rel_error(num_w, dw) < TOL and nh.rel_error(num_b, [db]) < TOL


def test_mse_gradient_has_no_half_factor():
    """linear_regression_loss uses mean(r²), like torch.nn.MSELoss, not NNDL's ½ mean(r²): loss and gradient
    must agree on it.

    Against autograd of the ½ convention the same gradients are off by a factor 2, a relative error
    of exactly 1/3, far above TOL: the parity check tells the two conventions apart.
    """
    X, y, w, b = make_problem(11, 3, seed=4)
    loss, dw, db = linear_regression_loss(X, y, w, b)
    inputs = {"X": X, "y": y, "w": w, "b": np.array(b)}
    residual = X @ w + b - y
    assert loss == pytest.approx(np.mean(residual ** 2), rel=1e-12)

    ref = nh.autograd_gradients(torch_mse, inputs, wrt=["w", "b"])
    assert nh.rel_error(dw, ref["w"]) < TOL and nh.rel_error(db, ref["b"]) < TOL

    def torch_half_mse(X, y, w, b):
        return 0.5 * torch_mse(X, y, w, b)

    half = nh.autograd_gradients(torch_half_mse, inputs, wrt=["w", "b"])
    assert nh.rel_error(dw, half["w"]) == pytest.approx(1 / 3)
    assert nh.rel_error(db, half["b"]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("X_shape,y_shape,w_shape", [((5,), (5,), (1,)), ((5, 2), (4,), (2,)),
                                                     ((5, 2), (5, 1), (2,)), ((5, 2), (5,), (3,))])
def test_linear_regression_loss_names_the_shapes_it_rejects(X_shape, y_shape, w_shape):
    with pytest.raises(ValueError, match=r"expected X \(N, D\), y \(N,\), w \(D,\)"):
        linear_regression_loss(np.ones(X_shape), np.ones(y_shape), np.ones(w_shape), 0.0)
    with pytest.raises(ValueError, match="linear_regression_loss"):
        ridge_regression_loss(np.ones(X_shape), np.ones(y_shape), np.ones(w_shape), 0.0, 0.1)


def test_linear_regression_loss_is_exact_for_huge_values():
    """No overflow or cancellation problems at large but finite magnitudes (float64)."""
    X, y, w, b = make_problem(6, 2, seed=5)
    X, y = X * 1e100, y * 1e100
    loss, dw, db = linear_regression_loss(X, y, w, b)
    assert np.isfinite(loss) and np.all(np.isfinite(dw)) and np.isfinite(db)
    ref = nh.autograd_gradients(torch_mse, {"X": X, "y": y, "w": w, "b": np.array(b)}, wrt=["w", "b"])
    assert nh.rel_error(dw, ref["w"]) < TOL


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("n,d", [(5, 1), (12, 3), (50, 7)])
def test_least_squares_solves_the_normal_equations(n, d):
    X, y, _, _ = make_problem(n, d, seed=6)
    w, b = least_squares(X, y)
    X_hat = np.column_stack([X, np.ones(n)])
    w_ref = np.linalg.solve(X_hat.T @ X_hat, X_hat.T @ y)
    np.testing.assert_allclose(np.append(w, b), w_ref, rtol=1e-9, atol=1e-10)
    # the optimum: the hand-written gradient vanishes there
    _, dw, db = linear_regression_loss(X, y, w, b)
    assert np.abs(dw).max() < 1e-10 and abs(db) < 1e-10


def test_least_squares_recovers_a_noise_free_model_and_handles_rank_deficiency():
    X, y = nh.make_linear_regression(n=30, w=(1.5, -2.0, 0.5), b=-1.0, noise=0.0, rng=np.random.default_rng(7))
    w, b = least_squares(X, y)
    np.testing.assert_allclose(w, [1.5, -2.0, 0.5], atol=1e-12)
    assert b == pytest.approx(-1.0, abs=1e-12)
    X_dup = np.column_stack([X, X[:, 0]])                 # an exact copy: XᵀX is singular
    w_dup, b_dup = least_squares(X_dup, y)
    assert np.all(np.isfinite(w_dup))
    np.testing.assert_allclose(X_dup @ w_dup + b_dup, y, atol=1e-10)
    assert w_dup[0] == pytest.approx(w_dup[3])            # minimum norm splits the weight evenly


@pytest.mark.parametrize("lam", [1e-6, 0.01, 1.0, 100.0])
@pytest.mark.parametrize("n,d", [(3, 5), (20, 4), (40, 12)])   # includes D > N, where only ridge is unique
def test_ridge_closed_form_is_where_the_gradient_vanishes(n, d, lam):
    X, y, _, _ = make_problem(n, d, seed=8)
    w, b = ridge_closed_form(X, y, lam)
    _, dw, db = ridge_regression_loss(X, y, w, b, lam)
    scale = 1 + np.abs(X).max() * np.abs(y).max()
    assert np.abs(dw).max() < 1e-9 * scale and abs(db) < 1e-9 * scale


def test_ridge_closed_form_special_cases():
    X, y, _, _ = make_problem(25, 4, seed=9)
    w0, b0 = ridge_closed_form(X, y, 0.0)
    w_ls, b_ls = least_squares(X, y)
    np.testing.assert_allclose(w0, w_ls, rtol=1e-9)
    assert b0 == pytest.approx(b_ls, rel=1e-9)
    # a huge penalty shrinks w to 0, and the unpenalised bias becomes the mean target
    w_big, b_big = ridge_closed_form(X, y, 1e12)
    assert np.abs(w_big).max() < 1e-9 and b_big == pytest.approx(y.mean())
    # the norm of w shrinks monotonically as lam grows
    norms = [np.linalg.norm(ridge_closed_form(X, y, lam)[0]) for lam in (0.0, 0.01, 0.1, 1.0, 10.0)]
    assert all(a > b for a, b in zip(norms, norms[1:]))
    with pytest.raises(ValueError, match=">= 0"):
        ridge_closed_form(X, y, -1.0)


def test_ridge_closed_form_fits_several_targets_at_once():
    X, _, _, _ = make_problem(15, 3, seed=10)
    Y = np.random.default_rng(11).normal(size=(15, 4))
    W, B = ridge_closed_form(X, Y, 0.05)
    assert W.shape == (3, 4) and B.shape == (4,)
    for k in range(4):
        w, b = ridge_closed_form(X, Y[:, k], 0.05)
        np.testing.assert_allclose(W[:, k], w, rtol=1e-10, atol=1e-12)
        assert B[k] == pytest.approx(b, rel=1e-10)


def test_ridge_closed_form_matches_torch_lstsq_on_the_augmented_system():
    """Ridge is least squares on [X_c; sqrt(N lam) I] w ≈ [y_c; 0]: an independent route through torch."""
    X, y, _, _ = make_problem(30, 6, seed=12)
    lam = 0.3
    Xc, yc = X - X.mean(0), y - y.mean()
    A = torch.as_tensor(np.vstack([Xc, np.sqrt(len(X) * lam) * np.eye(6)]))
    rhs = torch.as_tensor(np.concatenate([yc, np.zeros(6)]))[:, None]
    w_ref = torch.linalg.lstsq(A, rhs).solution[:, 0].numpy()
    np.testing.assert_allclose(ridge_closed_form(X, y, lam)[0], w_ref, rtol=1e-9)


# --------------------------------------------------------------------------- features, optimiser


def test_polynomial_features():
    x = np.array([0.5, -2.0, 3.0])
    np.testing.assert_allclose(polynomial_features(x, 3), [[0.5, 0.25, 0.125], [-2, 4, -8], [3, 9, 27]])
    assert polynomial_features(x[:, None], 2).shape == (3, 2)      # (N, 1) input is fine
    assert polynomial_features(x, 0).shape == (3, 0)               # degree 0: no features, bias only


def test_standardize_uses_given_statistics_and_survives_constant_columns():
    rng = np.random.default_rng(13)
    X = np.column_stack([rng.normal(5, 3, 50), np.full(50, 2.0), rng.uniform(-1, 1, 50)])
    Xs, mean, std = standardize(X)
    np.testing.assert_allclose(Xs.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Xs.std(0), [1, 0, 1], atol=1e-12)   # the constant column is only centred
    X_new = rng.normal(size=(4, 3))
    np.testing.assert_allclose(standardize(X_new, mean, std)[0], (X_new - mean) / std)


def test_fit_polynomial_ridge_recovers_a_polynomial():
    x = np.linspace(-1, 1, 30)
    y = 1 - 2 * x + 3 * x ** 3
    predict = fit_polynomial_ridge(x, y, 3, 0.0)
    x_new = np.array([-0.7, 0.1, 0.9])
    np.testing.assert_allclose(predict(x_new), 1 - 2 * x_new + 3 * x_new ** 3, atol=1e-9)


def test_minibatch_sgd_full_batch_is_gradient_descent_and_reaches_the_closed_form():
    X, y, _, _ = make_problem(40, 3, seed=14)
    X = standardize(X)[0]
    w0, b0 = np.zeros(3), 0.0
    (w, b), losses = minibatch_sgd(linear_regression_loss, [w0, b0], X, y, lr=0.1, batch_size=len(X), epochs=3)
    w_ref, b_ref = w0.copy(), b0
    for _ in range(3):                                     # the same three steps by hand
        _, dw, db = linear_regression_loss(X, y, w_ref, b_ref)
        w_ref, b_ref = w_ref - 0.1 * dw, b_ref - 0.1 * db
    np.testing.assert_allclose(w, w_ref, rtol=1e-12)
    assert b == pytest.approx(b_ref) and len(losses) == 3 and np.all(w0 == 0)   # inputs not modified
    (w, b), _ = minibatch_sgd(linear_regression_loss, [w0, b0], X, y, lr=0.2, batch_size=len(X), epochs=300)
    w_ls, b_ls = least_squares(X, y)
    np.testing.assert_allclose(w, w_ls, atol=1e-8)
    assert b == pytest.approx(b_ls, abs=1e-8)


def test_minibatch_sgd_batches_and_reproducibility():
    X, y, _, _ = make_problem(23, 2, seed=15)
    seen = []
    _, losses = minibatch_sgd(lambda Xb, yb, w: (seen.append(len(yb)) or 0.0, np.zeros_like(w)),
                              [np.zeros(2)], X, y, lr=0.1, batch_size=5, epochs=2)
    assert seen == [5, 5, 5, 5, 3] * 2 and len(losses) == 10     # the last batch is the remainder
    run = lambda: minibatch_sgd(linear_regression_loss, [np.zeros(2), 0.0], X, y, lr=0.05, batch_size=4, epochs=2,
                                rng=np.random.default_rng(1))[0]
    a, b = run(), run()
    np.testing.assert_array_equal(a[0], b[0])


def test_minibatch_sgd_matches_a_torch_autograd_loop():
    """Same init, same batches, same lr: a torch loop (nn.Linear, F.mse_loss, autograd) retraces minibatch_sgd.

    The update is written out (p -= lr * p.grad), which is exactly what torch.optim.SGD does without
    momentum; the notebook compares with torch.optim.SGD itself (whose first call costs seconds of imports).
    """
    X, y, _, _ = make_problem(37, 4, seed=16)
    (w, b), _ = minibatch_sgd(linear_regression_loss, [np.zeros(4), 0.0], X, y, lr=0.01, batch_size=8, epochs=3,
                              rng=np.random.default_rng(2))
    model = torch.nn.Linear(4, 1).double()
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    order_rng = np.random.default_rng(2)
    for _ in range(3):
        order = torch.as_tensor(order_rng.permutation(len(X)))
        for start in range(0, len(X), 8):
            batch = order[start:start + 8]
            loss = torch.nn.functional.mse_loss(model(Xt[batch]).squeeze(1), yt[batch])
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.01 * p.grad
    assert nh.rel_error(w, model.weight.detach().numpy()[0]) < 1e-10
    assert nh.rel_error(b, model.bias.item()) < 1e-10
