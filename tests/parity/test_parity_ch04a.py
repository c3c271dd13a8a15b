"""Notebook 04's NumPy layers (nndl_helpers.chapters.ch04a) against torch.autograd, in float64.

Every backward the notebook teaches is compared with autograd on random shapes, odd sizes
included: the activations of ACTIVATIONS, maxout, the affine layer, the two squared errors
(mse_loss, half_mse_loss), mlp_forward / mlp_backward, and the whole MLP for each output type
(MLP.loss's parameter gradients and MLP.backward's input gradient grads["x"]). The MLP trains
with chapter 7a's optimizers (their step-by-step parity with torch.optim is tested there).
Bad input must fail with a ValueError that names the shapes.
"""
import re
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters import ch04a
# notebook 04's torch references: each activation, MLP.forward and MLP.loss in torch operations
from nndl_helpers.chapters.ch04a_torch import TORCH_ACTIVATIONS, torch_mlp_loss, torch_mlp_output
from nndl_helpers.chapters.ch07a import SGD, Adam
from nndl_helpers.chapters.ch07b import he_normal_init, normal_init, xavier_normal_init

TOL = 1e-6

SHAPES = [(1, 1), (3, 5), (7, 2), (4, 13), (11,), (2, 3, 5)]


def _rng(*key):
    """A generator seeded from the test's parameters, the same in every process.

    crc32, unlike the built-in hash() of a string (salted per process, PYTHONHASHSEED), keeps the
    seed fixed, so a failing case draws the same data when it is run again.
    """
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in key])


# --------------------------------------------------------------------------- activations


def test_registry_has_the_required_activations():
    required = {"relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu", "silu", "softplus"}
    assert required <= set(ch04a.ACTIVATIONS)
    assert set(ch04a.ACTIVATIONS) == set(TORCH_ACTIVATIONS), "add the torch reference of a new activation to TORCH_ACTIVATIONS (notebook 04)"
    for forward, backward in ch04a.ACTIVATIONS.values():
        assert callable(forward) and callable(backward)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_activation_matches_autograd(name, shape):
    rng = _rng(name, shape)
    z = 3 * rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    forward, backward = ch04a.ACTIVATIONS[name]
    a, cache = forward(z)
    assert a.shape == z.shape
    assert nh.rel_error(a, TORCH_ACTIVATIONS[name](torch.from_numpy(z)).numpy()) < TOL
    dz = backward(dout, cache)
    ref = nh.autograd_gradients(TORCH_ACTIVATIONS[name], {"z": z}, dout=dout)["z"]
    assert dz.shape == z.shape
    assert nh.rel_error(dz, ref) < TOL


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_activation_is_stable_at_extremes(name):
    """Huge inputs neither overflow nor produce nan, and the kinks at 0 follow PyTorch's convention."""
    z = np.array([[-1e4, -800.0, -50.0, -1e-12, 0.0, 1e-12, 50.0, 800.0, 1e4]])
    dout = np.ones_like(z)
    forward, backward = ch04a.ACTIVATIONS[name]
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        a, cache = forward(z)
        dz = backward(dout, cache)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(dz))
    assert nh.rel_error(a, TORCH_ACTIVATIONS[name](torch.from_numpy(z)).numpy()) < TOL
    ref = nh.autograd_gradients(TORCH_ACTIVATIONS[name], {"z": z}, dout=dout)["z"]
    assert nh.rel_error(dz, ref) < TOL


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "silu", "gelu", "softplus"])
def test_activation_keeps_float32(name):
    z = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    forward, backward = ch04a.ACTIVATIONS[name]
    a, cache = forward(z)
    assert a.dtype == np.float32
    assert backward(np.ones_like(a), cache).dtype == np.float32


def test_a_wrong_backward_is_caught():
    """The comparison is sharp enough to catch a plausible mistake (sigmoid' written as a instead of a(1-a))."""
    rng = _rng("wrong")
    z, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    a, cache = ch04a.sigmoid_forward(z)
    ref = nh.autograd_gradients(TORCH_ACTIVATIONS["sigmoid"], {"z": z}, dout=dout)["z"]
    assert nh.rel_error(dout * a, ref) > 1e-2
    assert nh.rel_error(ch04a.sigmoid_backward(dout, cache), ref) < TOL


# --------------------------------------------------------------------------- maxout


@pytest.mark.parametrize("n, units, pieces", [(1, 1, 2), (3, 5, 3), (6, 2, 4), (5, 7, 1)])
def test_maxout_matches_autograd(n, units, pieces):
    rng = _rng("maxout", n, units, pieces)
    z = rng.standard_normal((n, units * pieces))
    dout = rng.standard_normal((n, units))
    a, cache = ch04a.maxout_forward(z, pieces)

    def torch_maxout(z):
        return z.reshape(n, units, pieces).amax(dim=2)

    assert nh.rel_error(a, torch_maxout(torch.from_numpy(z)).numpy()) < TOL
    ref = nh.autograd_gradients(torch_maxout, {"z": z}, dout=dout)["z"]
    assert nh.rel_error(ch04a.maxout_backward(dout, cache), ref) < TOL


def test_maxout_rejects_widths_that_do_not_split():
    with pytest.raises(ValueError, match=re.escape("(2, 7)")):
        ch04a.maxout_forward(np.zeros((2, 7)), 3)


# --------------------------------------------------------------------------- affine layer


@pytest.mark.parametrize("n, d, m", [(1, 1, 1), (3, 7, 5), (8, 1, 9), (2, 13, 3), (5, 4, 1)])
def test_affine_matches_autograd(n, d, m):
    rng = _rng("affine", n, d, m)
    x, W, b = rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal(m)
    dout = rng.standard_normal((n, m))
    out, cache = ch04a.affine_forward(x, W, b)
    assert out.shape == (n, m)
    assert nh.rel_error(out, x @ W + b) < TOL
    dx, dW, db = ch04a.affine_backward(dout, cache)
    ref = nh.autograd_gradients(lambda x, W, b: x @ W + b, {"x": x, "W": W, "b": b}, dout=dout)
    assert (dx.shape, dW.shape, db.shape) == ((n, d), (d, m), (m,))
    for got, name in ((dx, "x"), (dW, "W"), (db, "b")):
        assert nh.rel_error(got, ref[name]) < TOL, name


@pytest.mark.parametrize("x_shape, W_shape, b_shape, named", [
    ((4, 6), (5, 3), (3,), ["(4, 6)", "(5, 3)"]),     # x has the wrong number of features
    ((4, 5), (5, 3), (4,), ["(4,)", "(5, 3)"]),       # b does not match W's outputs
    ((5,), (5, 3), (3,), ["(5,)"]),                   # a single sample must be a (1, D) row
    ((4, 5), (5, 3, 1), (3,), ["(5, 3, 1)"]),         # W is not a matrix
])
def test_affine_forward_names_bad_shapes(x_shape, W_shape, b_shape, named):
    with pytest.raises(ValueError) as info:
        ch04a.affine_forward(np.zeros(x_shape), np.zeros(W_shape), np.zeros(b_shape))
    for text in named:
        assert text in str(info.value)


def test_affine_backward_names_bad_upstream_gradient():
    _, cache = ch04a.affine_forward(np.zeros((4, 5)), np.zeros((5, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=re.escape("(4, 2)")):
        ch04a.affine_backward(np.zeros((4, 2)), cache)


# --------------------------------------------------------------------------- squared error


SQUARED_ERRORS = {  # name -> torch reference: mse_loss is MSELoss(reduction="sum") / N, half_mse_loss half of it
    "mse_loss": lambda pred, y: F.mse_loss(pred, y, reduction="sum") / len(pred),
    "half_mse_loss": lambda pred, y: 0.5 * F.mse_loss(pred, y, reduction="sum") / len(pred),
}


@pytest.mark.parametrize("name", sorted(SQUARED_ERRORS))
@pytest.mark.parametrize("n, k", [(1, 1), (5, 3), (9, 1), (4, 7)])
def test_squared_error_matches_autograd(name, n, k):
    rng = _rng(name, n, k)
    pred, y = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    loss_fn, torch_fn = getattr(ch04a, name), SQUARED_ERRORS[name]
    loss, dpred = loss_fn(pred, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(torch_fn(torch.from_numpy(pred), torch.from_numpy(y)).item(), rel=1e-12)
    ref = nh.autograd_gradients(torch_fn, {"pred": pred, "y": y}, wrt=["pred"])["pred"]
    assert nh.rel_error(dpred, ref) < TOL
    if k == 1:  # a single output accepts targets of shape (N,)
        assert loss_fn(pred, y[:, 0])[0] == loss


def test_mse_is_the_plain_mean_and_half_mse_its_half():
    pred, y = np.array([[1.0, 2.0], [3.0, 5.0]]), np.zeros((2, 2))
    assert ch04a.mse_loss(pred, y)[0] == pytest.approx((1 + 4 + 9 + 25) / 2)
    assert ch04a.half_mse_loss(pred, y)[0] == pytest.approx((1 + 4 + 9 + 25) / 4)
    assert np.allclose(ch04a.mse_loss(pred, y)[1], 2 * ch04a.half_mse_loss(pred, y)[1])


@pytest.mark.parametrize("name", sorted(SQUARED_ERRORS))
def test_squared_error_names_bad_shapes(name):
    with pytest.raises(ValueError, match=re.escape("(4, 2)")) as info:
        getattr(ch04a, name)(np.zeros((4, 2)), np.zeros((4, 3)))
    assert name in str(info.value)


# --------------------------------------------------------------------------- the whole MLP


NETWORKS = [
    ([4, 3], "relu", "softmax", 0.0),            # no hidden layer: softmax regression
    ([5, 7, 3], "relu", "softmax", 0.0),
    ([3, 4, 5, 6, 2], "tanh", "softmax", 0.1),   # deeper, two classes via softmax
    ([2, 9, 1], "sigmoid", "sigmoid", 0.01),     # one logistic output
    ([6, 5, 5, 1], "gelu", "sigmoid", 0.0),
    ([1, 11, 1], "elu", "linear", 0.0),          # 1-D regression
    ([3, 8, 4], "silu", "linear", 0.05),         # several real outputs
    ([2, 3, 3, 3, 2], "leaky_relu", "softmax", 0.0),
    ([7, 6, 3], "softplus", "softmax", 0.0),
    ([2, 4, 2], "identity", "softmax", 0.0),
]


@pytest.mark.parametrize("sizes, activation, output, l2", NETWORKS)
@pytest.mark.parametrize("n", [1, 6])
def test_mlp_loss_and_gradients_match_autograd(sizes, activation, output, l2, n):
    rng = _rng("mlp", sizes, activation, output, n)
    model = ch04a.MLP(sizes, activation, output=output, l2=l2, seed=int(rng.integers(1000)))
    for k in model.params:  # non-zero biases so that every term of the backward pass is exercised
        if k.startswith("b"):
            model.params[k][:] = 0.1 * rng.standard_normal(model.params[k].shape)
    X = rng.standard_normal((n, sizes[0]))
    if output == "softmax":
        y = rng.integers(0, sizes[-1], size=n)
    elif output == "sigmoid":
        y = rng.integers(0, 2, size=n)
    else:
        y = rng.standard_normal((n, sizes[-1]))
    loss, grads = model.loss(X, y)
    assert isinstance(loss, float)
    assert set(grads) == set(model.params), "loss returns the gradients of the parameters only"
    inputs = {"x": X, "y": y, **model.params}
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    assert loss == pytest.approx(torch_mlp_loss(model)(**tensors).item(), rel=1e-10)
    ref = nh.autograd_gradients(torch_mlp_loss(model), inputs, wrt=["x", *model.params])
    for k in model.params:
        assert grads[k].shape == model.params[k].shape
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    # backward of the loss's delta^(L) gives the same parameter gradients (without L2) and dL/dX
    z, cache = model.forward(X)
    grads_b = model.backward(ch04a._output_loss(output, z, y)[1], cache)
    assert set(grads_b) == set(model.params) | {"x"}
    assert grads_b["x"].shape == X.shape
    assert nh.rel_error(grads_b["x"], ref["x"]) < TOL
    for k in model.params:
        decay = l2 * model.params[k] if k.startswith("W") else 0.0
        assert nh.rel_error(grads_b[k] + decay, grads[k]) < TOL, k


@pytest.mark.parametrize("sizes, activation, output, l2", NETWORKS)
def test_mlp_backward_matches_autograd_for_any_upstream_gradient(sizes, activation, output, l2):
    """MLP.backward (mlp_backward) for a random dout: every parameter, and the input X (grads["x"])."""
    rng = _rng("backward", sizes, activation)
    model = ch04a.MLP(sizes, activation, output=output, l2=l2, seed=int(rng.integers(1000)))
    X = rng.standard_normal((5, sizes[0]))
    out, cache = model.forward(X)
    assert out.shape == (5, sizes[-1])
    assert np.array_equal(model(X), out)
    dout = rng.standard_normal(out.shape)
    grads = model.backward(dout, cache)
    torch_out = torch_mlp_output(model)
    inputs = {"x": X, **model.params}
    assert nh.rel_error(out, torch_out(**{k: torch.as_tensor(v) for k, v in inputs.items()}).numpy()) < TOL
    ref = nh.autograd_gradients(torch_out, inputs, dout=dout)
    assert set(grads) == set(ref)
    for k in ref:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    # the free functions are what the class runs
    out_f, cache_f = ch04a.mlp_forward(X, model.params, activation=activation)
    assert np.array_equal(out_f, out)
    grads_f = ch04a.mlp_backward(dout, cache_f)
    assert all(np.array_equal(grads_f[k], grads[k]) for k in grads)


def test_mlp_forward_predict_and_proba():
    rng = _rng("predict")
    X = rng.standard_normal((9, 4))
    softmax_net = ch04a.MLP([4, 6, 3], "relu", seed=0)
    proba = softmax_net.predict_proba(X)
    assert softmax_net(X).shape == (9, 3) and proba.shape == (9, 3)
    out, cache = softmax_net.forward(X)
    assert np.array_equal(out, softmax_net(X))
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(softmax_net.predict(X), proba.argmax(axis=1))
    binary_net = ch04a.MLP([4, 5, 1], "tanh", output="sigmoid", seed=0)
    p = binary_net.predict_proba(X)
    assert p.shape == (9,) and np.all((p > 0) & (p < 1))
    assert np.array_equal(binary_net.predict(X), (p > 0.5).astype(int))
    regressor = ch04a.MLP([4, 5, 1], "tanh", output="linear", seed=0)
    assert regressor.predict(X).shape == (9,)
    with pytest.raises(ValueError):
        regressor.predict_proba(X)
    hidden = ch04a.MLP([4, 5, 7, 2], "relu", seed=0).hidden_activations(X)
    assert [h.shape for h in hidden] == [(9, 5), (9, 7)]


def test_mlp_is_reproducible_and_keeps_its_dtype():
    a = ch04a.MLP([5, 8, 3], "relu", seed=3)
    b = ch04a.MLP([5, 8, 3], "relu", seed=3)
    c = ch04a.MLP([5, 8, 3], "relu", seed=4)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])
    net32 = ch04a.MLP([5, 8, 3], "relu", seed=0, dtype=np.float32)
    X = np.ones((4, 5))  # float64 input is cast to the model's dtype
    loss, grads = net32.loss(X, np.array([0, 1, 2, 0]))
    assert net32(X).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    out, cache = net32.forward(X)
    assert all(g.dtype == np.float32 for g in net32.backward(np.ones_like(out), cache).values())


@pytest.mark.parametrize("weight_init, expected_std", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(2 / 700)),
                                                       (0.05, 0.05)])
def test_mlp_weight_init(weight_init, expected_std):
    W = ch04a.MLP([400, 300], "relu", weight_init=weight_init, seed=0).params["W1"]
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert np.all(ch04a.MLP([400, 300], "relu", weight_init=weight_init, seed=0).params["b1"] == 0)


@pytest.mark.parametrize("activation, weight_init, init", [
    ("relu", "auto", he_normal_init), ("gelu", "auto", he_normal_init), ("tanh", "auto", xavier_normal_init),
    ("sigmoid", "he", he_normal_init), ("relu", "xavier", xavier_normal_init),
    ("relu", 0.3, lambda i, o, rng: normal_init(i, o, rng, std=0.3)),
])
def test_mlp_draws_its_weights_from_chapter_7s_initializers(activation, weight_init, init):
    """Layer by layer from one generator seeded with `seed`, cast to the model's dtype."""
    model = ch04a.MLP([6, 5, 4, 3], activation, weight_init=weight_init, seed=7, dtype=np.float32)
    rng = np.random.default_rng(7)
    for l, (m_in, m_out) in enumerate([(6, 5), (5, 4), (4, 3)], start=1):
        assert np.array_equal(model.params[f"W{l}"], init(m_in, m_out, rng).astype(np.float32))
    assert list(ch04a.init_mlp_params([6, 5, 4, 3], np.random.default_rng(7), weight_init=weight_init,
                                     activation=activation)) == ["W1", "b1", "W2", "b2", "W3", "b3"]


def test_mlp_is_stable_with_huge_logits():
    model = ch04a.MLP([3, 4, 5], "relu", weight_init=100.0, seed=0)
    loss, grads = model.loss(np.full((2, 3), 50.0), np.array([0, 4]))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_mlp_rejects_bad_input():
    model = ch04a.MLP([784, 16, 10], "relu", seed=0)
    for method in (model.forward, model, model.predict, model.hidden_activations):
        with pytest.raises(ValueError) as info:
            method(np.zeros((2, 100)))
        assert "(N, 784)" in str(info.value) and "(2, 100)" in str(info.value)
    out, cache = model.forward(np.zeros((3, 784)))
    with pytest.raises(ValueError, match=re.escape("(3, 7)")):
        model.backward(np.zeros((3, 7)), cache)  # dout must have the output's shape (3, 10)
    with pytest.raises(ValueError, match="rows"):
        model.loss(np.zeros((3, 784)), np.array([1, 2]))
    with pytest.raises(ValueError, match="unknown activation"):
        ch04a.MLP([2, 3, 2], "swishy")
    with pytest.raises(ValueError, match="output"):
        ch04a.MLP([2, 3, 2], "relu", output="hinge")
    with pytest.raises(ValueError, match="2 classes"):
        ch04a.MLP([2, 3, 1], "relu", output="softmax")
    with pytest.raises(ValueError, match="exactly 1"):
        ch04a.MLP([2, 3, 2], "relu", output="sigmoid")
    with pytest.raises(ValueError, match="weight_init"):
        ch04a.MLP([2, 3, 2], "relu", weight_init="glorot")
    with pytest.raises(ValueError, match="layer_sizes"):
        ch04a.MLP([2], "relu")


# --------------------------------------------------------------------------- training with chapter 7a's optimizers


def test_chapter_7a_optimizers_train_an_mlp_in_place():
    """MLP.params and MLP.loss's grads plug into opt.step(params, grads); the notebook's training loops rely on it."""
    X, y = nh.make_toy_2d("moons", n=120, noise=0.1, rng=np.random.default_rng(0))
    for opt in (SGD(lr=0.3, momentum=0.9), Adam(lr=0.03)):
        model = ch04a.MLP([2, 16, 2], "tanh", seed=0)
        first = model.loss(X, y)[0]
        for _ in range(200):
            opt.step(model.params, model.loss(X, y)[1])
        assert model.loss(X, y)[0] < first / 3
        assert np.mean(model.predict(X) == y) > 0.95


def test_chapter_4_defines_no_optimizer_of_its_own():
    assert not hasattr(ch04a, "SGD") and not hasattr(ch04a, "Adam")
