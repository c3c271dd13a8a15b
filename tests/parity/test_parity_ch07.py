"""Chapter 7's NumPy code against PyTorch: every optimizer step, every backward pass, the schedules.

Everything in float64; relative error (CS231n) < 1e-6. The code under test is imported from
``nndl_helpers.chapters.ch07a`` / ``ch07a_torch`` (optimizers, schedules; exported from
notebooks/07a_optimization.ipynb) and ``nndl_helpers.chapters.ch07b`` (initializers, BatchNorm,
LayerNorm, dropout; exported from notebooks/07b_initialization_regularization.ipynb).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nndl_helpers import rel_error
from nndl_helpers.chapters.ch07a import (OPTIMIZERS, SGD, Adam, AdamW, Momentum, Nesterov, cosine_schedule,
                                         exponential_schedule, make_optimizer, step_schedule, warmup_schedule)
from nndl_helpers.chapters.ch07a_torch import compare_optimizer_with_torch
from nndl_helpers.chapters.ch07b import (INITIALIZERS, batchnorm_backward, batchnorm_forward, batchnorm_state,
                                         dropout_backward, dropout_forward, init_weight, layernorm_backward,
                                         layernorm_forward)

TOL = 1e-6

OPTIMIZER_CASES = {
    "sgd": [dict(lr=0.1), dict(lr=0.03, weight_decay=0.1)],
    "momentum": [dict(lr=0.05), dict(lr=0.01, momentum=0.5, weight_decay=0.05)],
    "nesterov": [dict(lr=0.05), dict(lr=0.02, momentum=0.95, weight_decay=0.05)],
    "adagrad": [dict(lr=0.1), dict(lr=0.5, eps=1e-6, weight_decay=0.02)],
    "rmsprop": [dict(lr=0.01), dict(lr=0.003, beta=0.8, eps=1e-6, weight_decay=0.02)],
    "adadelta": [dict(), dict(lr=0.3, beta=0.5, eps=1e-4, weight_decay=0.02)],
    "adam": [dict(lr=0.01), dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1)],
    "adamw": [dict(lr=0.01), dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.5)],
}
SHAPES = [[(3, 4), (5,)], [(1,)], [(7, 2, 3), (2, 9), (1, 1)]]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("case", [0, 1])
@pytest.mark.parametrize("shapes", SHAPES, ids=["matrix+vector", "scalar", "three"])
def test_optimizer_matches_torch_step_for_step(name, case, shapes):
    optimizer = make_optimizer(name, **OPTIMIZER_CASES[name][case])
    assert compare_optimizer_with_torch(optimizer, shapes, steps=8, seed=case) < TOL


def test_optimizer_comparison_can_fail():
    """A wrong update (Adam without bias correction, i.e. another beta1 for torch) must be caught."""
    class BrokenAdam(Adam):
        def _update(self, p, g, state):
            M = state.setdefault("m", np.zeros_like(p))
            M *= self.betas[0]
            M += (1 - self.betas[0]) * g
            p -= self.lr * M          # no second moment, no bias correction

    assert compare_optimizer_with_torch(BrokenAdam(lr=0.01), [(4,)], steps=3) > 1e-3


def test_optimizers_update_in_place_and_keep_dtype():
    params = {"w": np.ones(3, dtype=np.float32)}
    ref = params["w"]
    for name in OPTIMIZERS:
        make_optimizer(name).step(params, {"w": np.full(3, 0.5, dtype=np.float32)})
    assert params["w"] is ref and ref.dtype == np.float32 and np.all(ref < 1)


def test_class_defaults():
    assert Momentum().momentum == 0.9 and not Momentum().nesterov
    assert Nesterov().nesterov and AdamW().weight_decay == 0.01
    assert AdamW.decoupled_weight_decay and not Adam.decoupled_weight_decay


@pytest.mark.parametrize("make", [
    lambda: make_optimizer("adamax"),
    lambda: make_optimizer(None),
    lambda: SGD(lr=-0.1),
    lambda: SGD(lr=0.1, momentum=1.0),
    lambda: SGD(lr=0.1, nesterov=True),
    lambda: Adam(betas=(0.9, 1.0)),
    lambda: AdamW(weight_decay=-1),
    lambda: make_optimizer("rmsprop", beta=1.5),
])
def test_bad_optimizer_arguments_raise(make):
    with pytest.raises(ValueError):
        make()


def test_step_checks_gradients():
    opt = SGD(lr=0.1)
    with pytest.raises(ValueError, match="no gradient"):
        opt.step({"w": np.ones(2)}, {})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": np.ones(2)}, {"w": np.ones(3)})


# ---------------------------------------------------------------- schedules

def _torch_lrs(make_scheduler, steps, lr0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    scheduler = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(out)


@pytest.mark.parametrize("lr0", [0.1, 3e-4])
def test_schedules_match_torch(lr0):
    S = torch.optim.lr_scheduler
    pairs = [
        (step_schedule(lr0, 7, 0.3), lambda o: S.StepLR(o, 7, 0.3)),
        (exponential_schedule(lr0, 0.9), lambda o: S.ExponentialLR(o, 0.9)),
        (cosine_schedule(lr0, 40, lr0 / 50), lambda o: S.CosineAnnealingLR(o, 40, lr0 / 50)),
        (warmup_schedule(lambda t: lr0, 13, 0.05), lambda o: S.LinearLR(o, 0.05, 1.0, 13)),
    ]
    for mine, make in pairs:
        assert rel_error([mine(t) for t in range(41)], _torch_lrs(make, 41, lr0)) < TOL


def test_warmup_hands_over_to_the_schedule():
    lr = warmup_schedule(cosine_schedule(1.0, 10), 5, start_factor=0.2)
    assert lr(0) == pytest.approx(0.2) and lr(5) == pytest.approx(1.0) and lr(15) == pytest.approx(0.0)
    assert all(lr(t) < lr(t + 1) for t in range(5))


@pytest.mark.parametrize("make", [lambda: step_schedule(0.1, 0), lambda: exponential_schedule(0.1, 1.5),
                                  lambda: cosine_schedule(-1, 10), lambda: warmup_schedule(lambda t: 1, 5, 0)])
def test_bad_schedule_arguments_raise(make):
    with pytest.raises(ValueError):
        make()


# ---------------------------------------------------------------- normalization

def _grads_vs_torch(forward, backward, torch_fn, x, gamma, beta, seed):
    out, cache = forward(x, gamma, beta)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    mine = backward(dout, cache)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    ref_out = torch_fn(*tensors)
    ref = torch.autograd.grad((ref_out * torch.tensor(dout)).sum(), tensors)
    assert rel_error(out, ref_out.detach().numpy()) < TOL
    for m, r in zip(mine, ref):
        assert rel_error(m, r.numpy()) < TOL


@pytest.mark.parametrize("shape", [(2, 1), (5, 3), (16, 7), (33, 64)])
@pytest.mark.parametrize("seed", [0, 1])
def test_batchnorm_train_backward_matches_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    x = 4 + 3 * rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    _grads_vs_torch(lambda x, g, b: batchnorm_forward(x, g, b, training=True), batchnorm_backward,
                    lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True, eps=1e-5),
                    x, gamma, beta, seed)


@pytest.mark.parametrize("shape", [(1, 4), (9, 5)])
def test_batchnorm_eval_backward_matches_autograd(shape):
    rng = np.random.default_rng(3)
    x, gamma, beta = rng.standard_normal(shape), rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    state = {"running_mean": rng.standard_normal(shape[1]), "running_var": rng.uniform(0.2, 3, shape[1])}
    rm, rv = (torch.tensor(state[k]) for k in ("running_mean", "running_var"))
    _grads_vs_torch(lambda x, g, b: batchnorm_forward(x, g, b, state, training=False), batchnorm_backward,
                    lambda x, g, b: F.batch_norm(x, rm, rv, g, b, training=False, eps=1e-5), x, gamma, beta, 3)


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_running_statistics_match_module(momentum):
    rng = np.random.default_rng(5)
    D = 7
    module = torch.nn.BatchNorm1d(D, momentum=momentum).double()
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(gamma))
        module.bias.copy_(torch.tensor(beta))
    state = batchnorm_state(D)
    for step in range(6):
        xb = rng.standard_normal((3 + 2 * step, D)) * (step + 1) + step
        out = batchnorm_forward(xb, gamma, beta, state, training=True, momentum=momentum)[0]
        assert rel_error(out, module(torch.tensor(xb)).detach().numpy()) < TOL
    assert rel_error(state["running_mean"], module.running_mean.numpy()) < TOL
    assert rel_error(state["running_var"], module.running_var.numpy()) < TOL
    module.eval()
    x = rng.standard_normal((4, D))
    assert rel_error(batchnorm_forward(x, gamma, beta, state, training=False)[0],
                     module(torch.tensor(x)).detach().numpy()) < TOL


def test_batchnorm_bad_input():
    g = np.ones(3)
    with pytest.raises(ValueError):
        batchnorm_forward(np.ones((1, 3)), g, g)            # one sample in training mode
    with pytest.raises(ValueError):
        batchnorm_forward(np.ones((4, 3)), g, g, None, training=False)
    with pytest.raises(ValueError):
        batchnorm_forward(np.ones((4, 2)), g, g)


@pytest.mark.parametrize("shape", [(1, 2), (4, 5), (3, 2, 8), (2, 3, 4, 6)])
@pytest.mark.parametrize("seed", [0, 1])
def test_layernorm_backward_matches_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    x = 2 + 5 * rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    _grads_vs_torch(layernorm_forward, layernorm_backward,
                    lambda x, g, b: F.layer_norm(x, (shape[-1],), g, b, eps=1e-5), x, gamma, beta, seed)


def test_layernorm_matches_module_and_rejects_bad_shapes():
    rng = np.random.default_rng(0)
    module = torch.nn.LayerNorm(6).double()
    x = rng.standard_normal((5, 6))
    assert rel_error(layernorm_forward(x, np.ones(6), np.zeros(6))[0], module(torch.tensor(x)).detach().numpy()) < TOL
    with pytest.raises(ValueError):
        layernorm_forward(x, np.ones(5), np.zeros(5))


# ---------------------------------------------------------------- dropout

@pytest.mark.parametrize("shape", [(1,), (4, 9), (3, 5, 2)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_backward_with_fixed_mask_matches_autograd(shape, p):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    keep = rng.random(shape) >= p
    out, cache = dropout_forward(x, p, keep_mask=keep)
    dout = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    ref_out = xt * torch.tensor(keep, dtype=torch.float64) / (1 - p)
    (ref,) = torch.autograd.grad((ref_out * torch.tensor(dout)).sum(), [xt])
    assert rel_error(out, ref_out.detach().numpy()) < TOL
    assert rel_error(dropout_backward(dout, cache), ref.numpy()) < TOL


def test_dropout_statistics_and_eval_mode():
    x = np.ones((500, 400))
    out = dropout_forward(x, 0.25, rng=np.random.default_rng(0))[0]
    assert abs(out.mean() - 1) < 0.01 and abs((out == 0).mean() - 0.25) < 0.01
    assert set(np.unique(out)) == {0.0, 1 / 0.75}
    same, cache = dropout_forward(x, 0.25, training=False)
    assert same is x and cache is None and dropout_backward(x, cache) is x
    assert dropout_forward(x, 0.0, rng=np.random.default_rng(0))[0] is x


@pytest.mark.parametrize("p", [1.0, 1.5, -0.01, "0.5", None, True])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_forward(np.ones(3), p, rng=np.random.default_rng(0))


def test_dropout_needs_a_mask_source():
    with pytest.raises(ValueError):
        dropout_forward(np.ones(3), 0.5)
    with pytest.raises(ValueError):
        dropout_forward(np.ones(3), 0.5, keep_mask=np.ones(4, bool))


# ---------------------------------------------------------------- initialization

@pytest.mark.parametrize("name, expected_std", [
    ("normal", 0.01), ("xavier", math.sqrt(2 / 700)), ("xavier_uniform", math.sqrt(2 / 700)),
    ("he", math.sqrt(2 / 300)), ("orthogonal", None)])
def test_initializers(name, expected_std):
    W = init_weight(name, 300, 400, np.random.default_rng(0))
    assert W.shape == (300, 400)
    if expected_std is None:
        assert np.allclose(W @ W.T, np.eye(300), atol=1e-10)
        W2 = init_weight(name, 400, 300, np.random.default_rng(0))
        assert np.allclose(W2.T @ W2, np.eye(300), atol=1e-10)
    else:
        assert abs(W.std() / expected_std - 1) < 0.02


def test_init_bad_name_or_size():
    with pytest.raises(ValueError):
        init_weight("lecun", 3, 3, np.random.default_rng(0))
    with pytest.raises(ValueError):
        init_weight("he", 0, 3, np.random.default_rng(0))


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializers_take_a_convolution_shape(name):
    """shape=(C_out, C_in, k_h, k_w) with fan_in = C_in k_h k_w, fan_out = C_out: the same random stream
    as the (fan_in, fan_out) matrix, rearranged as torch.nn.init lays out a convolution's kernel."""
    W = init_weight(name, 12, 5, np.random.default_rng(1), shape=(5, 3, 2, 2))
    flat = init_weight(name, 12, 5, np.random.default_rng(1))
    assert W.shape == (5, 3, 2, 2)
    if name == "orthogonal":
        rows = W.reshape(5, 12)
        assert np.allclose(rows @ rows.T, np.eye(5), atol=1e-10) and np.array_equal(rows, flat.T)
    else:
        assert np.array_equal(W.ravel(), flat.ravel())


def test_orthogonal_init_rejects_a_shape_that_does_not_match_the_fans():
    with pytest.raises(ValueError):
        init_weight("orthogonal", 12, 5, np.random.default_rng(0), shape=(4, 3, 2, 2))
    with pytest.raises(ValueError):
        init_weight("orthogonal", 12, 5, np.random.default_rng(0), shape=(5, 3, 3, 3))
