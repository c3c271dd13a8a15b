"""Notebook 10a's NumPy code (nndl_helpers.chapters.ch10a) against torch.autograd, in float64.

The hand-written gradients of chapter 10: the elastic weight consolidation (EWC) penalty's gradient, and the
diagonal Fisher information (per-sample squared gradients of log p under labels drawn from the model), each
compared with torch.autograd on random shapes; bad input must fail with a ValueError.
"""
import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers.chapters import ch10a as ch10
from nndl_helpers.chapters.ch04a import MLP
from nndl_helpers.chapters.ch04a_torch import torch_mlp_output

TOL = 1e-6


def _random_state(rng, shapes):
    params = {f"p{i}": rng.standard_normal(shape) for i, shape in enumerate(shapes)}
    anchor = {k: v + rng.standard_normal(v.shape) for k, v in params.items()}
    fisher = {k: rng.uniform(0, 3, v.shape) for k, v in params.items()}
    return params, anchor, fisher


@pytest.mark.parametrize("shapes", [[(3,)], [(4, 5), (5,)], [(2, 3, 4), (1,), (7, 1)]])
@pytest.mark.parametrize("strength", [0.0, 0.3, 250.0])
def test_ewc_penalty_matches_autograd(shapes, strength):
    rng = np.random.default_rng([len(shapes), int(strength)])
    params, anchor, fisher = _random_state(rng, shapes)
    penalty, grads = ch10.ewc_penalty(params, anchor, fisher, strength)

    def torch_penalty(**p):
        return sum(0.5 * strength * (torch.from_numpy(fisher[k]) * (p[k] - torch.from_numpy(anchor[k])) ** 2).sum()
                   for k in p)

    ref = torch_penalty(**{k: torch.from_numpy(v) for k, v in params.items()}).item()
    assert abs(penalty - ref) <= 1e-10 * max(1.0, abs(ref))
    assert set(grads) == set(params)
    ref_grads = nh.autograd_gradients(torch_penalty, params)
    for k in params:
        assert grads[k].shape == params[k].shape and grads[k].dtype == params[k].dtype
        assert nh.rel_error(grads[k], ref_grads[k]) < TOL, k


def test_ewc_penalty_is_zero_at_the_anchor_and_keeps_float32():
    rng = np.random.default_rng(0)
    params, _, fisher = _random_state(rng, [(3, 2)])
    penalty, grads = ch10.ewc_penalty(params, params, fisher, 5.0)
    assert penalty == 0.0 and not grads["p0"].any()
    p32 = {"w": np.ones((2, 2), np.float32)}
    assert ch10.ewc_penalty(p32, {"w": np.zeros((2, 2))}, {"w": np.ones((2, 2))}, 1.0)[1]["w"].dtype == np.float32


@pytest.mark.parametrize("sizes, activation, n", [([4, 3], "relu", 1), ([5, 6, 3], "tanh", 7), ([3, 4, 4, 2], "relu", 5)])
def test_fisher_diagonal_matches_autograd(sizes, activation, n):
    rng = np.random.default_rng([n, len(sizes)])
    model = MLP(sizes, activation, seed=n)
    X = rng.standard_normal((n, sizes[0]))
    ours = ch10.fisher_diagonal(model, X, np.random.default_rng(7))
    out_fn, draw, ref = torch_mlp_output(model), np.random.default_rng(7), {k: 0.0 for k in model.params}
    for x, p in zip(X, model.predict_proba(X)):
        y_tilde = int(draw.choice(len(p), p=p / p.sum()))
        g = nh.autograd_gradients(lambda x, **w: -torch.log_softmax(out_fn(x, **w), dim=1)[0, y_tilde],
                                  {"x": x[None], **model.params}, wrt=list(model.params))
        ref = {k: ref[k] + g[k] ** 2 / n for k in g}
    assert set(ours) == set(model.params)
    for k in ours:
        assert ours[k].shape == model.params[k].shape
        assert nh.rel_error(ours[k], ref[k]) < TOL, k


def test_bad_input_raises_value_error():
    params = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="strength"):
        ch10.ewc_penalty(params, params, {"w": np.ones(3)}, -1.0)
    with pytest.raises(ValueError, match="shape"):
        ch10.ewc_penalty(params, {"w": np.zeros(2)}, {"w": np.ones(3)}, 1.0)
    with pytest.raises(ValueError, match="softmax"):
        ch10.fisher_diagonal(MLP([2, 1], output="linear"), np.zeros((2, 2)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="l2"):
        ch10.fisher_diagonal(MLP([2, 3], l2=0.1), np.zeros((2, 2)), np.random.default_rng(0))
