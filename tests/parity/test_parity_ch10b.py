"""Notebook 10b's NumPy code (nndl_helpers.chapters.ch10b) against torch.autograd, in float64.

Multi-task learning: the masked cross-entropy, the two-head MLP's backward (hard sharing) and the soft-sharing
penalty. Meta-learning: the batched (per-task) affine layer and MLP backward, the per-task MSE, MAML's inner step,
the first-order meta-gradient against autograd with the inner gradient detached, and the PyTorch second-order
meta-gradient (ch10b_torch) against centred differences of the NumPy meta-objective. Bad input must fail with a
ValueError.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters import ch10b
from nndl_helpers.chapters.ch04a import MLP
from nndl_helpers.chapters.ch10b_torch import maml_meta_loss_torch, torch_task_mlp

TOL = 1e-6


def _check(ours, ref):
    assert set(ours) == set(ref)
    for k in ref:
        assert ours[k].shape == np.shape(ref[k]), k
        assert nh.rel_error(ours[k], ref[k]) < TOL, (k, nh.rel_error(ours[k], ref[k]))


@pytest.mark.parametrize("n, c", [(1, 2), (7, 3), (12, 10)])
def test_masked_cross_entropy_loss_matches_torch(n, c):
    rng = np.random.default_rng([n, c])
    z, y = rng.standard_normal((n, c)), rng.integers(-1, c, n)
    y[0] = 0                                               # at least one label
    loss, dz = ch10b.masked_cross_entropy_loss(z, y)
    ref = nh.autograd_gradients(lambda z: F.cross_entropy(z, torch.as_tensor(y), ignore_index=-1), {"z": z})
    assert abs(loss - F.cross_entropy(torch.as_tensor(z), torch.as_tensor(y), ignore_index=-1).item()) < 1e-12
    assert nh.rel_error(dz, ref["z"]) < TOL
    assert not dz[y < 0].any()


def test_masked_cross_entropy_loss_without_labels_is_zero():
    loss, dz = ch10b.masked_cross_entropy_loss(np.ones((3, 4)), -np.ones(3, np.int64))
    assert loss == 0.0 and dz.shape == (3, 4) and not dz.any()


@pytest.mark.parametrize("sizes, weight_b", [((5, 4, 3, 2), 1.0), ((6, 7, 10, 2), 0.3), ((3, 2, 4, 5), 5.0)])
def test_two_head_mlp_matches_autograd(sizes, weight_b):
    d, h, n_a, n_b = sizes
    rng = np.random.default_rng(list(sizes))
    model = ch10b.TwoHeadMLP(d, h, n_a, n_b, weight_b=weight_b, seed=d)
    X = rng.standard_normal((9, d))
    y_a, y_b = rng.integers(-1, n_a, 9), rng.integers(-1, n_b, 9)
    y_a[0], y_b[1] = 0, 0
    loss, grads = model.loss(X, y_a, y_b)

    def torch_loss(x, W1, b1, Wa, ba, Wb, bb):
        hidden = torch.relu(x @ W1 + b1)
        return (F.cross_entropy(hidden @ Wa + ba, torch.as_tensor(y_a), ignore_index=-1)
                + weight_b * F.cross_entropy(hidden @ Wb + bb, torch.as_tensor(y_b), ignore_index=-1))

    tensors = {k: torch.as_tensor(v) for k, v in {"x": X, **model.params}.items()}
    assert abs(loss - torch_loss(**tensors).item()) < 1e-10
    _check(grads, nh.autograd_gradients(torch_loss, {"x": X, **model.params}, wrt=list(model.params)))
    (z_a, z_b), cache = model.forward(X)
    dz_a, dz_b = rng.standard_normal(z_a.shape), rng.standard_normal(z_b.shape)
    back = model.backward(dz_a, dz_b, cache)
    def torch_heads(x, W1, b1, Wa, ba, Wb, bb):          # sum(z_a * dz_a) + sum(z_b * dz_b)
        hidden = torch.relu(x @ W1 + b1)
        return ((hidden @ Wa + ba) * torch.as_tensor(dz_a)).sum() + ((hidden @ Wb + bb) * torch.as_tensor(dz_b)).sum()

    ref = nh.autograd_gradients(torch_heads, {"x": X, **model.params})
    _check(back, ref)


@pytest.mark.parametrize("strength", [0.0, 0.1, 30.0])
@pytest.mark.parametrize("keys", [("W1",), ("W1", "b1"), ("W1", "b1", "W2")])
def test_soft_sharing_penalty_matches_autograd(strength, keys):
    net_a, net_b = MLP([4, 5, 3], seed=1), MLP([4, 5, 3], seed=2)
    penalty, grads_a, grads_b = ch10b.soft_sharing_penalty(net_a.params, net_b.params, strength, keys)
    inputs = {**{f"a_{k}": net_a.params[k] for k in keys}, **{f"b_{k}": net_b.params[k] for k in keys}}

    def torch_penalty(**p):
        return 0.5 * strength * sum(((p[f"a_{k}"] - p[f"b_{k}"]) ** 2).sum() for k in keys)

    ref = nh.autograd_gradients(torch_penalty, inputs)
    assert abs(penalty - torch_penalty(**{k: torch.as_tensor(v) for k, v in inputs.items()}).item()) < 1e-10
    _check({**{f"a_{k}": g for k, g in grads_a.items()}, **{f"b_{k}": g for k, g in grads_b.items()}}, ref)


@pytest.mark.parametrize("t, n, d, m", [(1, 1, 1, 1), (3, 5, 4, 2), (4, 10, 1, 40)])
def test_task_affine_backward_matches_autograd(t, n, d, m):
    rng = np.random.default_rng([t, n, d, m])
    x, W, b = rng.standard_normal((t, n, d)), rng.standard_normal((t, d, m)), rng.standard_normal((t, m))
    out, cache = ch10b.task_affine_forward(x, W, b)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = ch10b.task_affine_backward(dout, cache)
    ref = nh.autograd_gradients(lambda x, W, b: x @ W + b[:, None, :], {"x": x, "W": W, "b": b}, dout=dout)
    _check({"x": dx, "W": dW, "b": db}, ref)


def _task_params(sizes, t, rng):
    theta = MLP(list(sizes), output="linear", seed=len(sizes)).params
    return theta, {k: np.repeat(v[None], t, axis=0) + 0.1 * rng.standard_normal((t, *v.shape)) for k, v in theta.items()}


@pytest.mark.parametrize("sizes, t", [((1, 4, 1), 2), ((1, 8, 8, 1), 3), ((2, 5, 6, 3), 4)])
def test_task_mlp_backward_and_mse_loss_match_autograd(sizes, t):
    rng = np.random.default_rng([len(sizes), t])
    _, per_task = _task_params(sizes, t, rng)
    x, y = rng.standard_normal((t, 7, sizes[0])), rng.standard_normal((t, 7, sizes[-1]))
    pred, cache = ch10b.task_mlp_forward(x, per_task)
    loss, dpred = ch10b.task_mse_loss(pred, y)
    grads = ch10b.task_mlp_backward(dpred, cache)

    def torch_loss(x, **p):
        return ((torch_task_mlp(x, p) - torch.as_tensor(y)) ** 2).mean(dim=1).sum()

    assert abs(loss - torch_loss(**{k: torch.as_tensor(v) for k, v in {"x": x, **per_task}.items()}).item()) < 1e-10
    _check(grads, nh.autograd_gradients(torch_loss, {"x": x, **per_task}))


def _sine_batch(t, k, seed):
    x, y, _ = ch10b.sample_sine_tasks(t, 2 * k, np.random.default_rng(seed))
    return x[:, :k], y[:, :k], x[:, k:], y[:, k:]


@pytest.mark.parametrize("steps, inner_lr", [(1, 0.01), (2, 0.01), (3, 0.003)])
def test_maml_adapt_is_the_inner_gradient_step(steps, inner_lr):
    theta = MLP([1, 6, 6, 1], output="linear", seed=3).params
    x_s, y_s, _, _ = _sine_batch(3, 5, steps)
    adapted = ch10b.maml_adapt(theta, x_s, y_s, inner_lr=inner_lr, steps=steps)
    p = {k: torch.tensor(v).expand(3, *v.shape) for k, v in theta.items()}
    for _ in range(steps):
        p = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        loss = ((torch_task_mlp(torch.as_tensor(x_s), p) - torch.as_tensor(y_s)) ** 2).mean(dim=(1, 2)).sum()
        g = torch.autograd.grad(loss, list(p.values()))
        p = {k: v - inner_lr * gi for (k, v), gi in zip(p.items(), g)}
    for k in theta:
        assert adapted[k].shape == (3, *theta[k].shape)
        assert nh.rel_error(adapted[k], p[k].detach().numpy()) < 1e-10


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("sizes", [(1, 6, 1), (1, 8, 8, 1)])
def test_fomaml_meta_gradient_matches_autograd(steps, sizes):
    theta = MLP(list(sizes), output="linear", seed=5).params
    batch = _sine_batch(4, 6, len(sizes) + steps)
    loss, grads = ch10b.fomaml_meta_gradient(theta, *batch, inner_lr=0.01, steps=steps)
    tensors = [torch.as_tensor(a) for a in batch]
    ref_loss = maml_meta_loss_torch({k: torch.tensor(v, requires_grad=True) for k, v in theta.items()}, *tensors,
                                    inner_lr=0.01, steps=steps, first_order=True).item()
    assert abs(loss - ref_loss) < 1e-10 * max(1.0, abs(ref_loss))
    _check(grads, nh.autograd_gradients(
        lambda **p: maml_meta_loss_torch(p, *tensors, inner_lr=0.01, steps=steps, first_order=True), theta))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_second_order_meta_gradient_matches_centred_differences(seed):
    theta = MLP([1, 8, 8, 1], output="linear", seed=seed).params
    batch = _sine_batch(3, 10, 10 + seed)
    tensors = [torch.as_tensor(a) for a in batch]
    ours = nh.autograd_gradients(lambda **p: maml_meta_loss_torch(p, *tensors, inner_lr=0.01), theta)

    def numpy_meta_loss():
        adapted = ch10b.maml_adapt(theta, batch[0], batch[1], inner_lr=0.01)
        return ch10b.task_mse_loss(ch10b.task_mlp_forward(batch[2], adapted)[0], batch[3])[0] / 3

    numeric = {k: nh.numerical_gradient(numpy_meta_loss, p) for k, p in theta.items()}
    for k in theta:   # relative to the array's largest entry: centred differences of a tiny entry are noise
        assert np.abs(ours[k] - numeric[k]).max() < TOL * np.abs(numeric[k]).max(), k
    fo = ch10b.fomaml_meta_gradient(theta, *batch, inner_lr=0.01)[1]
    assert max(nh.rel_error(fo[k], ours[k]) for k in theta) > 1e-3      # the Hessian term is not zero


def test_sine_tasks_shapes_and_ranges():
    x, y, (A, phi) = ch10b.sample_sine_tasks(50, 7, np.random.default_rng(0))
    assert x.shape == y.shape == (50, 7, 1) and A.shape == phi.shape == (50,)
    assert x.min() >= -5 and x.max() <= 5 and A.min() >= 0.1 and A.max() <= 5 and phi.max() <= np.pi
    assert np.allclose(y, A[:, None, None] * np.sin(x - phi[:, None, None]))


def test_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="integer labels"):
        ch10b.masked_cross_entropy_loss(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="expects X"):
        ch10b.TwoHeadMLP(4, 3, 2, 2).forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="same shape"):
        ch10b.soft_sharing_penalty({"W1": np.zeros((2, 3))}, {"W1": np.zeros((2, 4))}, 1.0, ("W1",))
    with pytest.raises(ValueError, match=">= 0"):
        ch10b.soft_sharing_penalty({"W1": np.zeros(2)}, {"W1": np.zeros(2)}, -1.0, ("W1",))
    with pytest.raises(ValueError, match="n_tasks"):
        ch10b.sample_sine_tasks(0, 3, rng)
    with pytest.raises(ValueError, match="task_affine_forward"):
        ch10b.task_affine_forward(np.zeros((2, 3, 1)), np.zeros((3, 1, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="task_mse_loss"):
        ch10b.task_mse_loss(np.zeros((2, 3, 1)), np.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match="steps"):
        ch10b.maml_adapt({"W1": np.zeros((1, 1)), "b1": np.zeros(1)}, np.zeros((1, 2, 1)), np.zeros((1, 2, 1)),
                         inner_lr=0.1, steps=-1)
