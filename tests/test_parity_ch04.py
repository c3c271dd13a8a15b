"""Notebook 04's NumPy layers (nndl_helpers.chapters.ch04) against torch.autograd, in float64.

Every backward the notebook teaches is compared with autograd on random shapes, odd sizes
included: the activations of ACTIVATIONS, maxout, the affine layer, the squared error, and the
whole MLP for each output type. The optimizers are compared step by step with torch.optim.
Bad input must fail with a ValueError that names the shapes.
"""
import re
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters import ch04

TOL = 1e-6

TORCH_ACTIVATIONS = {
    "relu": lambda z: torch.relu(z),
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
    "elu": lambda z: F.elu(z),
    "sigmoid": lambda z: torch.sigmoid(z),
    "tanh": lambda z: torch.tanh(z),
    "softplus": lambda z: F.softplus(z),
    "silu": lambda z: F.silu(z),
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "identity": lambda z: z,
}
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
    assert required <= set(ch04.ACTIVATIONS)
    assert set(ch04.ACTIVATIONS) == set(TORCH_ACTIVATIONS), "add the torch reference of a new activation here"
    for forward, backward in ch04.ACTIVATIONS.values():
        assert callable(forward) and callable(backward)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_activation_matches_autograd(name, shape):
    rng = _rng(name, shape)
    z = 3 * rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    forward, backward = ch04.ACTIVATIONS[name]
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
    forward, backward = ch04.ACTIVATIONS[name]
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
    forward, backward = ch04.ACTIVATIONS[name]
    a, cache = forward(z)
    assert a.dtype == np.float32
    assert backward(np.ones_like(a), cache).dtype == np.float32


def test_a_wrong_backward_is_caught():
    """The comparison is sharp enough to catch a plausible mistake (sigmoid' written as a instead of a(1-a))."""
    rng = _rng("wrong")
    z, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    a, cache = ch04.sigmoid_forward(z)
    ref = nh.autograd_gradients(TORCH_ACTIVATIONS["sigmoid"], {"z": z}, dout=dout)["z"]
    assert nh.rel_error(dout * a, ref) > 1e-2
    assert nh.rel_error(ch04.sigmoid_backward(dout, cache), ref) < TOL


# --------------------------------------------------------------------------- maxout


@pytest.mark.parametrize("n, units, pieces", [(1, 1, 2), (3, 5, 3), (6, 2, 4), (5, 7, 1)])
def test_maxout_matches_autograd(n, units, pieces):
    rng = _rng("maxout", n, units, pieces)
    z = rng.standard_normal((n, units * pieces))
    dout = rng.standard_normal((n, units))
    a, cache = ch04.maxout_forward(z, pieces)

    def torch_maxout(z):
        return z.reshape(n, units, pieces).amax(dim=2)

    assert nh.rel_error(a, torch_maxout(torch.from_numpy(z)).numpy()) < TOL
    ref = nh.autograd_gradients(torch_maxout, {"z": z}, dout=dout)["z"]
    assert nh.rel_error(ch04.maxout_backward(dout, cache), ref) < TOL


def test_maxout_rejects_widths_that_do_not_split():
    with pytest.raises(ValueError, match=re.escape("(2, 7)")):
        ch04.maxout_forward(np.zeros((2, 7)), 3)


# --------------------------------------------------------------------------- affine layer


@pytest.mark.parametrize("n, d, m", [(1, 1, 1), (3, 7, 5), (8, 1, 9), (2, 13, 3), (5, 4, 1)])
def test_affine_matches_autograd(n, d, m):
    rng = _rng("affine", n, d, m)
    x, W, b = rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal(m)
    dout = rng.standard_normal((n, m))
    out, cache = ch04.affine_forward(x, W, b)
    assert out.shape == (n, m)
    assert nh.rel_error(out, x @ W + b) < TOL
    dx, dW, db = ch04.affine_backward(dout, cache)
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
        ch04.affine_forward(np.zeros(x_shape), np.zeros(W_shape), np.zeros(b_shape))
    for text in named:
        assert text in str(info.value)


def test_affine_backward_names_bad_upstream_gradient():
    _, cache = ch04.affine_forward(np.zeros((4, 5)), np.zeros((5, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=re.escape("(4, 2)")):
        ch04.affine_backward(np.zeros((4, 2)), cache)


# --------------------------------------------------------------------------- squared error


@pytest.mark.parametrize("n, k", [(1, 1), (5, 3), (9, 1), (4, 7)])
def test_mse_loss_matches_autograd(n, k):
    rng = _rng("mse", n, k)
    pred, y = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    loss, dpred = ch04.mse_loss(pred, y)

    def torch_mse(pred, y):
        return 0.5 * ((pred - y) ** 2).sum() / len(pred)

    assert loss == pytest.approx(torch_mse(torch.from_numpy(pred), torch.from_numpy(y)).item(), rel=1e-12)
    ref = nh.autograd_gradients(torch_mse, {"pred": pred, "y": y}, wrt=["pred"])["pred"]
    assert nh.rel_error(dpred, ref) < TOL
    if k == 1:  # a single output accepts targets of shape (N,)
        assert ch04.mse_loss(pred, y[:, 0])[0] == loss


def test_mse_loss_names_bad_shapes():
    with pytest.raises(ValueError, match=re.escape("(4, 2)")):
        ch04.mse_loss(np.zeros((4, 2)), np.zeros((4, 3)))


# --------------------------------------------------------------------------- the whole MLP


def torch_mlp_loss(model):
    act = TORCH_ACTIVATIONS[model.activation]

    def loss_fn(X, y, **params):
        a = X
        for l in range(1, model.num_layers + 1):
            z = a @ params[f"W{l}"] + params[f"b{l}"]
            a = act(z) if l < model.num_layers else z
        if model.output == "softmax":
            data_loss = F.cross_entropy(z, y)
        elif model.output == "sigmoid":
            data_loss = F.binary_cross_entropy_with_logits(z[:, 0], y.double())
        else:
            data_loss = 0.5 * ((z - y.reshape(z.shape)) ** 2).sum() / len(z)
        penalty = sum((params[f"W{l}"] ** 2).sum() for l in range(1, model.num_layers + 1))
        return data_loss + 0.5 * model.l2 * penalty
    return loss_fn


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
    model = ch04.MLP(sizes, activation, output=output, l2=l2, seed=int(rng.integers(1000)))
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
    assert set(grads) == set(model.params)
    inputs = {"X": X, "y": y, **model.params}
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    assert loss == pytest.approx(torch_mlp_loss(model)(**tensors).item(), rel=1e-10)
    ref = nh.autograd_gradients(torch_mlp_loss(model), inputs, wrt=list(model.params))
    for k in model.params:
        assert grads[k].shape == model.params[k].shape
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


def test_mlp_forward_predict_and_proba():
    rng = _rng("predict")
    X = rng.standard_normal((9, 4))
    softmax_net = ch04.MLP([4, 6, 3], "relu", seed=0)
    proba = softmax_net.predict_proba(X)
    assert softmax_net.forward(X).shape == (9, 3) and proba.shape == (9, 3)
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(softmax_net.predict(X), proba.argmax(axis=1))
    binary_net = ch04.MLP([4, 5, 1], "tanh", output="sigmoid", seed=0)
    p = binary_net.predict_proba(X)
    assert p.shape == (9,) and np.all((p > 0) & (p < 1))
    assert np.array_equal(binary_net.predict(X), (p > 0.5).astype(int))
    regressor = ch04.MLP([4, 5, 1], "tanh", output="linear", seed=0)
    assert regressor.predict(X).shape == (9,)
    with pytest.raises(ValueError):
        regressor.predict_proba(X)
    hidden = ch04.MLP([4, 5, 7, 2], "relu", seed=0).hidden_activations(X)
    assert [h.shape for h in hidden] == [(9, 5), (9, 7)]


def test_mlp_is_reproducible_and_keeps_its_dtype():
    a = ch04.MLP([5, 8, 3], "relu", seed=3)
    b = ch04.MLP([5, 8, 3], "relu", seed=3)
    c = ch04.MLP([5, 8, 3], "relu", seed=4)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])
    net32 = ch04.MLP([5, 8, 3], "relu", seed=0, dtype=np.float32)
    X = np.ones((4, 5))  # float64 input is cast to the model's dtype
    loss, grads = net32.loss(X, np.array([0, 1, 2, 0]))
    assert net32.forward(X).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


@pytest.mark.parametrize("weight_init, expected_std", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(2 / 700)),
                                                       (0.05, 0.05)])
def test_mlp_weight_init(weight_init, expected_std):
    W = ch04.MLP([400, 300], "relu", weight_init=weight_init, seed=0).params["W1"]
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert np.all(ch04.MLP([400, 300], "relu", weight_init=weight_init, seed=0).params["b1"] == 0)


def test_mlp_is_stable_with_huge_logits():
    model = ch04.MLP([3, 4, 5], "relu", weight_init=100.0, seed=0)
    loss, grads = model.loss(np.full((2, 3), 50.0), np.array([0, 4]))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_mlp_rejects_bad_input():
    model = ch04.MLP([784, 16, 10], "relu", seed=0)
    with pytest.raises(ValueError) as info:
        model.forward(np.zeros((2, 100)))
    assert "(N, 784)" in str(info.value) and "(2, 100)" in str(info.value)
    with pytest.raises(ValueError, match="rows"):
        model.loss(np.zeros((3, 784)), np.array([1, 2]))
    with pytest.raises(ValueError, match="unknown activation"):
        ch04.MLP([2, 3, 2], "swishy")
    with pytest.raises(ValueError, match="output"):
        ch04.MLP([2, 3, 2], "relu", output="hinge")
    with pytest.raises(ValueError, match="2 classes"):
        ch04.MLP([2, 3, 1], "relu", output="softmax")
    with pytest.raises(ValueError, match="exactly 1"):
        ch04.MLP([2, 3, 2], "relu", output="sigmoid")
    with pytest.raises(ValueError, match="weight_init"):
        ch04.MLP([2, 3, 2], "relu", weight_init="glorot")
    with pytest.raises(ValueError, match="layer_sizes"):
        ch04.MLP([2], "relu")


# --------------------------------------------------------------------------- optimizers


def _optimizer_run(make_numpy, make_torch, steps=6):
    rng = _rng("optimizer")
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads_seq = [{k: rng.standard_normal(p.shape) for k, p in params.items()} for _ in range(steps)]
    lrs = [0.1 * 0.7**t for t in range(steps)]  # a changing learning rate, as a schedule sets it
    tensors = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in params.items()}
    torch_opt = make_torch(list(tensors.values()))
    numpy_opt = make_numpy(params)
    for grads, lr in zip(grads_seq, lrs):
        numpy_opt.lr = lr
        numpy_opt.step(grads)
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        for group in torch_opt.param_groups:
            group["lr"] = lr
        torch_opt.step()
    return params, {k: t.detach().numpy() for k, t in tensors.items()}


def test_sgd_momentum_matches_torch():
    params, ref = _optimizer_run(lambda p: ch04.SGD(p, lr=0.1, momentum=0.9),
                                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    for k in params:
        assert nh.rel_error(params[k], ref[k]) < 1e-12


def test_adam_matches_torch():
    params, ref = _optimizer_run(lambda p: ch04.Adam(p, lr=0.1, betas=(0.8, 0.99), eps=1e-6),
                                 lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.8, 0.99), eps=1e-6))
    for k in params:
        assert nh.rel_error(params[k], ref[k]) < 1e-10


def test_optimizers_train_an_mlp_in_place():
    X, y = nh.make_toy_2d("moons", n=120, noise=0.1, rng=np.random.default_rng(0))
    for make in (lambda p: ch04.SGD(p, lr=0.3, momentum=0.9), lambda p: ch04.Adam(p, lr=0.03)):
        model = ch04.MLP([2, 16, 2], "tanh", seed=0)
        opt = make(model.params)
        first = model.loss(X, y)[0]
        for _ in range(200):
            opt.step(model.loss(X, y)[1])
        assert model.loss(X, y)[0] < first / 3
        assert np.mean(model.predict(X) == y) > 0.95
