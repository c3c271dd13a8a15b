"""Notebook 04b's automatic differentiation (nndl_helpers.chapters.ch04b) against torch.autograd, in float64.

The scalar engine ``Value`` and the array engine ``Tensor``: every operation's backward on random
inputs, broadcasting included, nodes used several times, deep graphs, gradients that accumulate
in the inputs; a whole MLP through ``autodiff_loss_and_grads`` against ``MLP.loss`` and torch. And
the centred-difference checker ``numerical_gradient`` / ``numerical_gradient_array``, which
``nndl_helpers.gradcheck`` calls (tests/unit/test_gradcheck.py checks that it is this code).
"""
import inspect
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers import gradcheck
from nndl_helpers.chapters import ch04b
from nndl_helpers.chapters.ch04a import ACTIVATIONS, MLP
from nndl_helpers.chapters.ch04a_torch import TORCH_ACTIVATIONS, torch_mlp_loss   # notebook 04's torch references

TOL = 1e-9   # float64 autograd against float64 autograd: rounding error only


def _rng(*key):
    """A generator seeded from the test's parameters, the same in every process (crc32, not hash())."""
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in key])


def _away_from_zero(rng, size=None):
    """Normal draws with |x| >= 0.1, so that no ReLU kink lies between x and the rounding of x."""
    x = rng.standard_normal(size)
    return np.where(np.abs(x) < 0.1, 0.1 + np.abs(x), x)


# --------------------------------------------------------------------------- Value, the scalar engine

VALUE_OPS = {                                       # a: any sign, b: in [0.5, 2]
    "add": lambda a, b: a + b,
    "radd": lambda a, b: 2.5 + a,
    "sub": lambda a, b: a - b,
    "rsub": lambda a, b: 2.5 - b,
    "mul": lambda a, b: a * b,
    "rmul": lambda a, b: -1.5 * a,
    "truediv": lambda a, b: a / b,
    "rtruediv": lambda a, b: 2.5 / b,
    "neg": lambda a, b: -a,
    "pow_int": lambda a, b: a**3,
    "pow_float": lambda a, b: b**1.7,
    "pow_negative": lambda a, b: b**-2,
    "exp": lambda a, b: a.exp(),
    "log": lambda a, b: b.log(),
    "tanh": lambda a, b: a.tanh(),
    "relu": lambda a, b: a.relu(),
    "same_node_twice": lambda a, b: a * a + b / a,
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", sorted(VALUE_OPS))
def test_value_op_matches_autograd(name, seed):
    rng = _rng("value", name, seed)
    inputs = {"a": float(_away_from_zero(rng)), "b": float(rng.uniform(0.5, 2.0))}
    leaves = {k: ch04b.Value(v) for k, v in inputs.items()}
    out = VALUE_OPS[name](**leaves)
    out.backward()
    ref = nh.autograd_gradients(VALUE_OPS[name], inputs)
    assert isinstance(out, ch04b.Value)
    assert out.data == pytest.approx(float(VALUE_OPS[name](**{k: torch.tensor(v, dtype=torch.float64) for k, v in inputs.items()})),
                                     rel=1e-12, abs=1e-12)
    for k, leaf in leaves.items():
        assert nh.rel_error(leaf.grad, ref[k]) < TOL, (name, k, leaf.grad, ref[k])


def _composite(a, b, c):
    d = a * b + c**3 - b / c
    e = (d.tanh() + 2 * (-a).exp() + 1.5).relu() + (-1 - a * a).relu() + (a * c).log()
    return 1 / (1 + e) - (3 - c) * e


@pytest.mark.parametrize("seed", range(5))
def test_value_composite_matches_autograd_and_centred_differences(seed):
    inputs = dict(zip("abc", _rng("composite", seed).uniform(0.5, 1.5, size=3)))
    leaves = {k: ch04b.Value(v) for k, v in inputs.items()}
    _composite(**leaves).backward()
    ref = nh.autograd_gradients(_composite, inputs)
    point = np.array(list(inputs.values()))
    numeric = ch04b.numerical_gradient(lambda: _composite(*map(ch04b.Value, point)).data, point)
    for i, (k, leaf) in enumerate(leaves.items()):
        assert nh.rel_error(leaf.grad, ref[k]) < TOL
        assert nh.rel_error(leaf.grad, numeric[i]) < 1e-6


def test_value_inputs_accumulate_and_intermediates_restart():
    a, b = ch04b.Value(1.5), ch04b.Value(-0.5)
    hidden = a * b
    out = hidden.tanh() + a
    out.backward()
    first = (a.grad, b.grad, hidden.grad)
    out.backward()                                  # like torch's backward(retain_graph=True) twice
    assert (a.grad, b.grad) == pytest.approx((2 * first[0], 2 * first[1]))
    assert hidden.grad == pytest.approx(first[2]) and out.grad == 1.0


def test_value_deep_graph_needs_no_recursion():
    x = ch04b.Value(0.5)
    y = x
    for _ in range(3 * sys.getrecursionlimit()):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def test_topological_order_lists_every_node_once_after_its_parents():
    a, b = ch04b.Value(1.0), ch04b.Value(2.0)
    c = a * b
    d = c + a            # a reaches d by two paths: a diamond
    e = d * c
    order = ch04b.topological_order(e)
    assert len(order) == len({id(n) for n in order}) == 5
    position = {id(n): i for i, n in enumerate(order)}
    for node in order:
        assert all(position[id(p)] < position[id(node)] for p in node._parents)
    assert order[-1] is e


# --------------------------------------------------------------------------- Tensor, the array engine

BINARY_OPS = {
    "add": lambda A, B: A + B,
    "sub": lambda A, B: A - B,
    "mul": lambda A, B: A * B,
    "rsub_number": lambda A, B: 1.5 - A * B,
    "radd_rmul_number": lambda A, B: 2.0 + 3.0 * (A - B),
    "neg": lambda A, B: -(A + B),
}
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 4), (3, 1)), ((2, 3, 4), (1, 4)),
                    ((2, 3, 4), (3, 1)), ((3, 1), (1, 4)), ((), (3, 4)), ((3, 4), ()), ((1,), (2, 3)),
                    ((2, 1, 4), (3, 1))]


def _tensor_vs_torch(fn, torch_fn, arrays, rng, **const):
    """Run fn on Tensors, backward with a random upstream gradient; compare with torch on the same numbers."""
    leaves = {k: ch04b.Tensor(v) for k, v in arrays.items()}
    out = fn(**leaves, **const)
    dout = rng.standard_normal(out.data.shape)
    out.backward(dout)
    ref = nh.autograd_gradients(lambda **t: torch_fn(**t, **const), arrays, dout=dout)
    expected = torch_fn(**{k: torch.as_tensor(v) for k, v in arrays.items()}, **const)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for k, leaf in leaves.items():
        assert leaf.grad.shape == arrays[k].shape, k
        assert nh.rel_error(leaf.grad, ref[k]) < TOL, k
    return leaves, out


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY_OPS))
def test_tensor_elementwise_op_with_broadcasting_matches_autograd(name, shapes):
    rng = _rng("binary", name, shapes)
    arrays = {"A": rng.standard_normal(shapes[0]), "B": rng.standard_normal(shapes[1])}
    _tensor_vs_torch(BINARY_OPS[name], BINARY_OPS[name], arrays, rng)


@pytest.mark.parametrize("shapes", [((1, 1), (1, 1)), ((3, 5), (5, 2)), ((7, 1), (1, 4)), ((2, 9), (9, 1))], ids=str)
def test_tensor_matmul_matches_autograd(shapes):
    rng = _rng("matmul", shapes)
    arrays = {"A": rng.standard_normal(shapes[0]), "B": rng.standard_normal(shapes[1])}
    _tensor_vs_torch(lambda A, B: A @ B, lambda A, B: A @ B, arrays, rng)


def test_tensor_matmul_rejects_non_matrices():
    with pytest.raises(ValueError, match=r"2-D.*\(3,\).*\(3, 2\)"):
        ch04b.Tensor(np.ones(3)) @ ch04b.Tensor(np.ones((3, 2)))


@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (11,), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_tensor_activation_matches_autograd(name, shape):
    assert set(ACTIVATIONS) == set(TORCH_ACTIVATIONS), "add the torch reference of a new activation to TORCH_ACTIVATIONS (notebook 04)"
    rng = _rng("activation", name, shape)
    arrays = {"Z": 3 * _away_from_zero(rng, shape)}
    _tensor_vs_torch(lambda Z: ch04b.activation(Z, name), lambda Z: TORCH_ACTIVATIONS[name](Z), arrays, rng)


REDUCTIONS = [(None, False), (None, True), (0, False), (1, True), (-1, False), ((0, 2), False), ((0, 2), True)]


@pytest.mark.parametrize("axis, keepdims", REDUCTIONS, ids=str)
@pytest.mark.parametrize("kind", ["sum", "mean"])
def test_tensor_reductions_match_autograd(kind, axis, keepdims):
    rng = _rng("reduce", kind, axis, keepdims)
    arrays = {"X": rng.standard_normal((3, 4, 5))}
    ours = ch04b.reduce_sum if kind == "sum" else ch04b.reduce_mean

    def theirs(X):
        dim = tuple(range(X.ndim)) if axis is None else axis
        return (torch.sum if kind == "sum" else torch.mean)(X, dim=dim, keepdim=keepdims)

    _tensor_vs_torch(lambda X: ours(X, axis=axis, keepdims=keepdims), theirs, arrays, rng)


@pytest.mark.parametrize("shape, new_shape", [((3, 4), (12,)), ((3, 4), (2, 6)), ((12,), (4, 3, 1)), ((2, 3), (-1,))],
                         ids=str)
def test_tensor_reshape_matches_autograd(shape, new_shape):
    rng = _rng("reshape", shape, new_shape)
    arrays = {"X": rng.standard_normal(shape)}
    _tensor_vs_torch(lambda X: ch04b.reshape(X, new_shape) * 2.0, lambda X: X.reshape(new_shape) * 2.0, arrays, rng)


@pytest.mark.parametrize("n, c", [(1, 2), (5, 3), (8, 10)])
def test_tensor_cross_entropy_matches_autograd(n, c):
    rng = _rng("ce", n, c)
    arrays = {"Z": 4 * rng.standard_normal((n, c))}
    y = rng.integers(0, c, size=n)
    _tensor_vs_torch(lambda Z, y: ch04b.cross_entropy(Z, y), lambda Z, y: F.cross_entropy(Z, torch.as_tensor(y)),
                     arrays, rng, y=y)
    leaf = ch04b.Tensor(arrays["Z"])
    ch04b.cross_entropy(leaf, y).backward()            # a scalar: backward() without grad means dL/dL = 1
    ref = nh.autograd_gradients(lambda Z: F.cross_entropy(Z, torch.as_tensor(y)), arrays)
    assert nh.rel_error(leaf.grad, ref["Z"]) < TOL


def test_tensor_composite_with_reuse_matches_autograd():
    rng = _rng("tensor composite")
    arrays = {"X": rng.standard_normal((4, 6)), "W": rng.standard_normal((6, 3)), "b": rng.standard_normal(3),
              "s": rng.standard_normal((1, 3))}
    y = rng.integers(0, 3, size=4)

    def ours(X, W, b, s):
        H = ch04b.activation(X @ W + b, "tanh") * s - 0.5
        return ch04b.cross_entropy(ch04b.reshape(H, (4, 3)), y) + ch04b.reduce_mean(ch04b.reduce_sum(H * H, axis=0))

    def theirs(X, W, b, s):
        H = torch.tanh(X @ W + b) * s - 0.5
        return F.cross_entropy(H, torch.as_tensor(y)) + (H * H).sum(dim=0).mean()

    leaves = {k: ch04b.Tensor(v) for k, v in arrays.items()}
    ours(**leaves).backward()
    ref = nh.autograd_gradients(theirs, arrays)
    for k, leaf in leaves.items():
        assert nh.rel_error(leaf.grad, ref[k]) < TOL, k


def test_tensor_leaves_accumulate_and_backward_checks_its_gradient():
    x = ch04b.Tensor(np.array([1.0, -2.0, 3.0]))
    loss = ch04b.reduce_sum(x * x)
    loss.backward()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * x.data)
    with pytest.raises(ValueError, match=r"grad must have shape \(3,\)"):
        (x * 2.0).backward()                          # not a scalar: the upstream gradient is needed
    with pytest.raises(ValueError, match="grad must have shape"):
        (x * 2.0).backward(np.ones(4))


def test_tensor_keeps_float32_and_wraps_without_copying():
    W = np.ones((3, 2), dtype=np.float32)
    t = ch04b.Tensor(W)
    assert t.data is W
    out = ch04b.reduce_mean(ch04b.activation(t * 2.0 + 1.0 - 0.5, "relu"))
    out.backward()
    assert out.data.dtype == t.grad.dtype == np.float32
    assert ch04b.Tensor(np.arange(3)).data.dtype == np.float64   # ints become float64


# --------------------------------------------------------------------------- an MLP without a backward pass


@pytest.mark.parametrize("l2", [0.0, 0.1])
@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATIONS))
def test_autodiff_mlp_matches_mlp_loss_and_autograd(activation, l2):
    rng = _rng("mlp", activation, l2)
    sizes = [int(rng.integers(1, 6)), int(rng.integers(2, 9)), int(rng.integers(2, 9)), int(rng.integers(2, 5))]
    model = MLP(sizes, activation, l2=l2, seed=int(rng.integers(1000)), dtype=np.float64)
    X = 2 * _away_from_zero(rng, (7, sizes[0]))
    y = rng.integers(0, sizes[-1], size=7)
    before = {k: p.copy() for k, p in model.params.items()}
    loss, grads = ch04b.autodiff_loss_and_grads(model, X, y)
    loss_hand, grads_hand = model.loss(X, y)
    ref = nh.autograd_gradients(torch_mlp_loss(model), {"x": X, "y": y, **model.params}, wrt=list(model.params))
    assert isinstance(loss, float) and loss == pytest.approx(loss_hand, rel=1e-12)
    assert list(grads) == list(model.params)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], before[k])
        assert grads[k].shape == model.params[k].shape
        assert nh.rel_error(grads[k], grads_hand[k]) < TOL, k
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


def test_autodiff_mlp_refuses_other_outputs():
    with pytest.raises(ValueError, match="softmax"):
        ch04b.autodiff_loss_and_grads(MLP([2, 3, 1], "tanh", output="sigmoid"), np.ones((2, 2)), np.array([0, 1]))


# --------------------------------------------------------------------------- the centred-difference checker


def _signature(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_checker_signatures_are_the_ones_every_caller_uses():
    assert _signature(ch04b.numerical_gradient) == [
        ("f", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("x", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("h", inspect.Parameter.POSITIONAL_OR_KEYWORD, 1e-5)]
    assert [name for name, _, _ in _signature(ch04b.numerical_gradient_array)] == ["f", "x", "dout", "h"]
    assert _signature(ch04b.numerical_gradient_array)[-1][2] == 1e-5
    assert _signature(ch04b.numerical_gradient) == _signature(gradcheck.numerical_gradient)
    assert _signature(ch04b.numerical_gradient_array) == _signature(gradcheck.numerical_gradient_array)


@pytest.mark.parametrize("shape", [(), (4,), (3, 5), (2, 3, 4)], ids=str)
def test_numerical_gradient_of_a_known_function_restores_x(shape):
    rng = _rng("numeric", shape)
    x = rng.standard_normal(shape)
    x_before = x.copy()
    num = ch04b.numerical_gradient(lambda: float(np.sum(np.sin(x) * x)), x)
    assert num.shape == x.shape and num.dtype == np.float64
    assert nh.rel_error(num, np.cos(x) * x + np.sin(x)) < 1e-7
    np.testing.assert_array_equal(x, x_before)


def test_numerical_gradient_perturbs_a_view_in_place():
    base = _rng("view").standard_normal((3, 6))
    view = base[:, ::2]                              # not contiguous: the entries f reads through `base`
    num = ch04b.numerical_gradient(lambda: float(np.sum(base**2)), view)
    assert nh.rel_error(num, 2 * view) < 1e-7


def test_numerical_gradient_refuses_float32_and_honours_h():
    with pytest.raises(TypeError, match="float64"):
        ch04b.numerical_gradient(lambda: 0.0, np.ones(3, dtype=np.float32))
    x = np.array([1.0])
    coarse = ch04b.numerical_gradient(lambda: float(x[0] ** 3), x, h=0.1)
    assert coarse[0] == pytest.approx(3 + 0.1**2)    # centred difference of x^3: 3x^2 + h^2, exactly


def test_numerical_gradient_array_checks_a_layer_backward():
    rng = _rng("numeric array")
    z = rng.standard_normal((3, 5))
    dout = rng.standard_normal((3, 5))
    num = ch04b.numerical_gradient_array(lambda: np.tanh(z), z, dout)
    assert nh.rel_error(num, dout * (1 - np.tanh(z) ** 2)) < 1e-7
    coarse = ch04b.numerical_gradient_array(lambda: z**3, z, dout, h=0.1)
    np.testing.assert_allclose(coarse, dout * (3 * z**2 + 0.1**2), rtol=1e-9)
