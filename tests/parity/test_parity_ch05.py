"""Parity tests for notebooks/05a_convolution.ipynb (ch05a) and 05b_modern_cnns.ipynb (ch05b).

Every NumPy forward and backward the two notebooks teach (convolution and max / average pooling, each
with loops and vectorised, the whole LeNet-5, and the residual block) is compared with PyTorch and
torch.autograd on the same float64 inputs: random shapes, odd sizes, stride > 1, padding and dilation.
Bad input must raise a ValueError that names the shapes.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nndl_helpers import rel_error
from nndl_helpers.chapters.ch05a import (LeNet5, avg_pool_backward, avg_pool_backward_naive, avg_pool_forward,
                                         avg_pool_forward_naive, check_images, conv2d_backward, conv2d_backward_naive,
                                         conv2d_forward, conv2d_forward_naive, conv_output_size, lenet5_params,
                                         max_pool_backward, max_pool_backward_naive, max_pool_forward,
                                         max_pool_forward_naive)
from nndl_helpers.chapters.ch05a_torch import copy_lenet_params, lenet5_torch
from nndl_helpers.chapters.ch05b import residual_block_backward, residual_block_forward, residual_block_params

TOL = 1e-6
CONV = {"naive": (conv2d_forward_naive, conv2d_backward_naive), "vectorised": (conv2d_forward, conv2d_backward)}
POOL = {("max", "naive"): (max_pool_forward_naive, max_pool_backward_naive, F.max_pool2d),
        ("max", "vectorised"): (max_pool_forward, max_pool_backward, F.max_pool2d),
        ("avg", "naive"): (avg_pool_forward_naive, avg_pool_backward_naive, F.avg_pool2d),
        ("avg", "vectorised"): (avg_pool_forward, avg_pool_backward, F.avg_pool2d)}


def torch_forward_backward(fn, dout, *arrays):
    """fn's output and the gradients of sum(out * dout) w.r.t. every array, by autograd (float64)."""
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.as_tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


# (N, C_in, H, W, C_out, KH, KW, stride, padding, dilation)
CONV_CASES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 0, 1),      # plain
    (1, 2, 8, 5, 3, 3, 3, 1, 1, 1),      # same padding, non-square input
    (2, 1, 9, 11, 2, 5, 5, 2, 2, 1),     # stride 2, odd sizes
    (3, 2, 7, 9, 3, 3, 2, 3, 1, 1),      # stride 3 leaves rows unvisited, rectangular kernel
    (2, 3, 10, 9, 2, 3, 3, 1, 2, 2),     # dilation 2 with padding
    (1, 2, 13, 12, 3, 3, 3, 2, 0, 3),    # dilation 3 and stride 2
    (2, 4, 5, 6, 1, 1, 1, 2, 0, 1),      # 1x1 convolution, stride 2
    (1, 1, 4, 4, 2, 4, 4, 1, 0, 1),      # kernel as large as the input
    (2, 2, 3, 3, 2, 5, 5, 1, 1, 1),      # kernel fits only thanks to the padding
]


def random_conv_case(seed):
    """A random valid convolution configuration (shapes, stride, padding, dilation)."""
    rng = np.random.default_rng(seed)
    while True:
        N, C_in, C_out = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 5)
        H, W = rng.integers(3, 13, size=2)
        KH, KW = rng.integers(1, 5, size=2)
        stride, padding, dilation = rng.integers(1, 4), rng.integers(0, 3), rng.integers(1, 3)
        if dilation * (KH - 1) + 1 <= H + 2 * padding and dilation * (KW - 1) + 1 <= W + 2 * padding:
            return tuple(int(v) for v in (N, C_in, H, W, C_out, KH, KW, stride, padding, dilation))


ALL_CONV_CASES = CONV_CASES + [random_conv_case(seed) for seed in range(8)]


def case_id(case):
    N, C_in, H, W, C_out, KH, KW, S, P, D = case
    return f"{N}x{C_in}x{H}x{W}-k{C_out}x{KH}x{KW}-S{S}P{P}D{D}"


@pytest.mark.parametrize("impl", list(CONV))
@pytest.mark.parametrize("case", ALL_CONV_CASES, ids=case_id)
def test_conv2d_forward_backward_match_torch(case, impl):
    N, C_in, H, W_in, C_out, KH, KW, stride, padding, dilation = case
    rng = np.random.default_rng(sum(case))
    x, W, b = rng.standard_normal((N, C_in, H, W_in)), rng.standard_normal((C_out, C_in, KH, KW)), rng.standard_normal(C_out)
    forward, backward = CONV[impl]
    out, cache = forward(x, W, b, stride=stride, padding=padding, dilation=dilation)
    assert out.shape == (N, C_out, conv_output_size(H, KH, stride, padding, dilation),
                         conv_output_size(W_in, KW, stride, padding, dilation))
    dout = rng.standard_normal(out.shape)
    dx, dW, db = backward(dout, cache)
    ref_out, (ref_dx, ref_dW, ref_db) = torch_forward_backward(
        lambda x, W, b: F.conv2d(x, W, b, stride=stride, padding=padding, dilation=dilation), dout, x, W, b)
    assert rel_error(out, ref_out) < TOL
    assert rel_error(dx, ref_dx) < TOL
    assert rel_error(dW, ref_dW) < TOL
    assert rel_error(db, ref_db) < TOL


@pytest.mark.parametrize("case", CONV_CASES[:5], ids=case_id)
def test_conv2d_backward_is_transposed_convolution(case):
    N, C_in, H, W_in, C_out, KH, KW, stride, padding, dilation = case
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((N, C_in, H, W_in)), rng.standard_normal((C_out, C_in, KH, KW)), np.zeros(C_out)
    out, cache = conv2d_forward(x, W, b, stride=stride, padding=padding, dilation=dilation)
    dout = rng.standard_normal(out.shape)
    extra = tuple((n + 2 * padding - dilation * (k - 1) - 1) % stride for n, k in ((H, KH), (W_in, KW)))
    up = F.conv_transpose2d(torch.tensor(dout), torch.tensor(W), stride=stride, padding=padding,
                            output_padding=extra, dilation=dilation).numpy()
    assert rel_error(conv2d_backward(dout, cache)[0], up) < TOL


def test_conv2d_float32_and_need_dx():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 9, 8))
    W, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    out64, cache64 = conv2d_forward(x, W, b, stride=2, padding=1)
    dout = rng.standard_normal(out64.shape)
    out32, cache32 = conv2d_forward(*(a.astype(np.float32) for a in (x, W, b)), stride=2, padding=1)
    grads32 = conv2d_backward(dout.astype(np.float32), cache32)
    assert out32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32)
    for g32, g64 in zip(grads32, conv2d_backward(dout, cache64)):
        assert rel_error(g32, g64) < 1e-4
    dx, dW, db = conv2d_backward(dout, cache64, need_dx=False)
    assert dx is None
    _, dW_full, db_full = conv2d_backward(dout, cache64)
    assert np.array_equal(dW, dW_full) and np.array_equal(db, db_full)


# (shape, pool_size, stride); stride None = pool_size
POOL_CASES = [((2, 3, 8, 8), 2, None), ((2, 2, 7, 9), 2, None), ((1, 3, 9, 7), 3, 2), ((2, 2, 10, 11), 2, 3),
              ((1, 2, 5, 5), 3, 1), ((3, 1, 6, 4), 1, 1), ((1, 1, 4, 4), 4, None)]


@pytest.mark.parametrize("kind,impl", list(POOL), ids=lambda v: str(v))
@pytest.mark.parametrize("shape,pool_size,stride", POOL_CASES, ids=lambda v: str(v))
def test_pooling_forward_backward_match_torch(shape, pool_size, stride, kind, impl):
    forward, backward, torch_pool = POOL[(kind, impl)]
    rng = np.random.default_rng(sum(shape) + pool_size)
    x = rng.standard_normal(shape)
    out, cache = forward(x, pool_size, stride)
    dout = rng.standard_normal(out.shape)
    ref_out, (ref_dx,) = torch_forward_backward(lambda x: torch_pool(x, pool_size, stride), dout, x)
    assert rel_error(out, ref_out) < TOL
    assert rel_error(backward(dout, cache), ref_dx) < TOL


@pytest.mark.parametrize("impl", ["naive", "vectorised"])
def test_max_pool_ties_route_like_torch(impl):
    """After a ReLU many values are exactly 0: the gradient must go to the first maximum of each window."""
    forward, backward, _ = POOL[("max", impl)]
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((2, 3, 6, 6)), 0)
    x[0, 0] = 0.0                                   # whole windows of ties
    out, cache = forward(x, 2, None)
    dout = rng.standard_normal(out.shape)
    _, (ref_dx,) = torch_forward_backward(lambda x: F.max_pool2d(x, 2), dout, x)
    assert np.array_equal(backward(dout, cache), ref_dx)


def test_lenet5_gradients_match_autograd():
    model = LeNet5(seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((3, 1, 28, 28)), rng.integers(0, 10, 3)
    loss, grads = model.loss(x, y)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    p = params
    a = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x), p["W1"], p["b1"], padding=2)), 2)
    a = F.max_pool2d(F.relu(F.conv2d(a, p["W2"], p["b2"])), 2).flatten(1)
    a = F.relu(F.relu(a @ p["W3"] + p["b3"]) @ p["W4"] + p["b4"])
    ref_loss = F.cross_entropy(a @ p["W5"] + p["b5"], torch.tensor(y))
    ref_loss.backward()
    assert abs(loss - ref_loss.item()) < 1e-10
    assert set(grads) == set(model.params)
    for k in params:
        assert rel_error(grads[k], params[k].grad.numpy()) < TOL, k
    scores, cache = model.forward(x)                       # the model convention: forward + backward = loss
    assert rel_error(model(x, batch_size=2), scores) < 1e-12
    assert np.array_equal(model.predict(x), scores.argmax(axis=1))


def test_lenet5_initialisation_is_he_and_seeded():
    p = lenet5_params(seed=0, dtype=np.float64)
    assert p["W1"].shape == (6, 1, 5, 5) and p["W3"].shape == (400, 120) and p["b5"].shape == (10,)
    rng = np.random.default_rng(0)
    expected = np.sqrt(2.0 / 25) * rng.standard_normal((6, 1, 5, 5))  # He: N(0, 2 / fan_in), fan_in = C_in k k
    assert rel_error(p["W1"], expected) < 1e-12
    assert np.array_equal(LeNet5(seed=0).params["W2"], lenet5_params(seed=0)["W2"])
    assert LeNet5(seed=0).params["W2"].dtype == np.float32


def test_lenet5_bad_input_raises():
    model = LeNet5(seed=0)
    with pytest.raises(ValueError, match=r"LeNet5: X: expected images of shape \(N, 1, 28, 28\), got shape \(2, 3, 28, 28\)"):
        model.forward(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"reshape flat rows with x.reshape\(-1, 1, 28, 28\)"):
        model(np.zeros((2, 784), np.float32))


def test_a_wrong_convolution_is_caught():
    """The comparison is sensitive: a true convolution (flipped kernel) is not what torch computes."""
    rng = np.random.default_rng(5)
    x, W, b = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3)), np.zeros(3)
    flipped, _ = conv2d_forward(x, W[:, :, ::-1, ::-1].copy(), b)
    assert rel_error(flipped, F.conv2d(torch.tensor(x), torch.tensor(W)).numpy()) > TOL


@pytest.mark.parametrize("n,k,s,p,d", [(28, 5, 1, 2, 1), (7, 3, 2, 0, 1), (8, 3, 3, 0, 1), (13, 3, 2, 1, 3), (224, 11, 4, 2, 1)])
def test_conv_output_size_matches_torch(n, k, s, p, d):
    out = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert conv_output_size(n, k, s, p, d) == out.shape[-1]


@pytest.mark.parametrize("forward", [conv2d_forward_naive, conv2d_forward], ids=["naive", "vectorised"])
def test_conv2d_bad_input_raises(forward):
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"x has 3 channels \(x.shape=\(2, 3, 5, 5\)\) but W expects 4 \(W.shape=\(8, 4, 3, 3\)\)"):
        forward(x, np.zeros((8, 4, 3, 3)), np.zeros(8))
    with pytest.raises(ValueError, match=r"7x7 window .* larger than the padded input 5x5 \(x.shape=\(2, 3, 5, 5\), padding=0\)"):
        forward(x, np.zeros((8, 3, 7, 7)), np.zeros(8))
    with pytest.raises(ValueError, match=r"7x7 window \(kernel 3x3, dilation 3\)"):
        forward(x, np.zeros((8, 3, 3, 3)), np.zeros(8), dilation=3)
    forward(x, np.zeros((8, 3, 7, 7)), np.zeros(8), padding=1)      # fits once padded: no error
    with pytest.raises(ValueError, match=r"b has shape \(7,\)"):
        forward(x, np.zeros((8, 3, 3, 3)), np.zeros(7))
    with pytest.raises(ValueError, match=r"x: expected a 4-D batch of images \(N, C, H, W\), got shape \(3, 5, 5\)"):
        forward(np.zeros((3, 5, 5)), np.zeros((8, 3, 3, 3)), np.zeros(8))
    with pytest.raises(ValueError, match=r"x: expected a floating dtype"):
        forward(x.astype(np.int64), np.zeros((8, 3, 3, 3)), np.zeros(8))
    with pytest.raises(ValueError, match=r"stride >= 1"):
        forward(x, np.zeros((8, 3, 3, 3)), np.zeros(8), stride=0)


@pytest.mark.parametrize("forward", [max_pool_forward_naive, max_pool_forward, avg_pool_forward_naive, avg_pool_forward])
def test_pool_bad_input_raises(forward):
    with pytest.raises(ValueError, match=r"4x4 window .* larger than the padded input 3x3 \(x.shape=\(1, 1, 3, 3\)"):
        forward(np.zeros((1, 1, 3, 3)), 4)
    with pytest.raises(ValueError, match=r"x: expected a 4-D batch of images"):
        forward(np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match=r"x: expected at least one image"):
        forward(np.zeros((0, 1, 4, 4)), 2)


# ---- check_images: the course's one validator of image batches (NumPy arrays and tensors alike) ----
@pytest.mark.parametrize("make", [np.zeros, lambda shape: torch.zeros(shape, dtype=torch.float32)], ids=["numpy", "torch"])
def test_check_images_accepts_and_returns_unchanged(make):
    x = make((3, 1, 28, 28))
    assert check_images(x) is x
    assert check_images(x, "X", channels=1, size=(28, 28), value_range=(0, 1)) is x
    assert check_images(x, channels=1, size=[28, 28]) is x


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("shape,dtype,kw,message", [
    ((3, 28, 28), "float32", {}, r"images: expected a 4-D batch of images \(N, C, H, W\), got shape \(3, 28, 28\); "
                                 r"add the channel axis"),
    ((3, 784), "float32", {"channels": 1, "size": (28, 28)}, r"reshape flat rows with x.reshape\(-1, 1, 28, 28\)"),
    ((0, 1, 28, 28), "float32", {}, r"at least one image .* got shape \(0, 1, 28, 28\)"),
    ((3, 3, 28, 28), "float32", {"channels": 1}, r"expected images of shape \(N, 1, H, W\), got shape \(3, 3, 28, 28\)"),
    ((3, 1, 32, 32), "float32", {"size": (28, 28)}, r"expected images of shape \(N, C, 28, 28\), got shape \(3, 1, 32, 32\)"),
    ((3, 1, 28, 28), "uint8", {}, r"expected a floating dtype .*uint8 with shape \(3, 1, 28, 28\)"),
    ((3, 1, 28, 28), "int64", {}, r"expected a floating dtype"),
])
def test_check_images_rejects(lib, shape, dtype, kw, message):
    x = np.zeros(shape, dtype=dtype) if lib == "numpy" else torch.zeros(shape, dtype=getattr(torch, dtype))
    with pytest.raises(ValueError, match=message):
        check_images(x, "images", **kw)


def test_check_images_value_range_and_non_arrays():
    for x in (np.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), 2.0)):
        with pytest.raises(ValueError, match=r"X: expected values in \[0, 1\], got \[2, 2\]"):
            check_images(x, "X", value_range=(0, 1))
    with pytest.raises(ValueError, match=r"x: expected an array or tensor of images .* got a list"):
        check_images([[[[0.0]]]])


def test_lenet5_torch_twin_computes_the_same_scores():
    model = LeNet5(seed=2, dtype=np.float64)
    x = np.random.default_rng(6).standard_normal((3, 1, 28, 28))
    twin = copy_lenet_params(model.params, lenet5_torch().double())
    with torch.no_grad():
        assert rel_error(model(x), twin(torch.tensor(x)).numpy()) < 1e-10


# ---- the residual block of notebook 05b: y = relu(x + conv2(relu(conv1(x)))) ----
def residual_block_torch(x, W1, b1, W2, b2, shortcut=True):
    pad = W1.shape[-1] // 2
    f = F.conv2d(F.relu(F.conv2d(x, W1, b1, padding=pad)), W2, b2, padding=pad)
    return F.relu(x + f if shortcut else f)


# (N, C, H, W, hidden, kernel size)
RESIDUAL_CASES = [(2, 3, 6, 5, 3, 3), (1, 2, 5, 7, 4, 3), (3, 4, 4, 4, 2, 3), (2, 2, 7, 6, 3, 5), (1, 1, 3, 3, 1, 1)]


@pytest.mark.parametrize("shortcut", [True, False], ids=["residual", "plain"])
@pytest.mark.parametrize("case", RESIDUAL_CASES, ids=lambda c: "N{}C{}H{}W{}-hidden{}-k{}".format(*c))
def test_residual_block_matches_autograd(case, shortcut):
    N, C, H, W, hidden, k = case
    rng = np.random.default_rng(sum(case))
    params = residual_block_params(C, rng, hidden=hidden, kernel_size=k)
    params["b1"], params["b2"] = rng.standard_normal(hidden), rng.standard_normal(C)
    x = rng.standard_normal((N, C, H, W))
    y, cache = residual_block_forward(x, params, shortcut=shortcut)
    dy = rng.standard_normal(y.shape)
    grads = residual_block_backward(dy, cache)
    assert set(grads) == {"x", "W1", "b1", "W2", "b2"}
    names = ["x", "W1", "b1", "W2", "b2"]
    ref_y, ref_grads = torch_forward_backward(
        lambda *t: residual_block_torch(*t, shortcut=shortcut), dy, x, *(params[n] for n in names[1:]))
    assert rel_error(y, ref_y) < TOL
    for name, ref in zip(names, ref_grads):
        assert rel_error(grads[name], ref) < TOL, name


def test_residual_block_with_a_zero_branch_is_the_identity_on_relu_outputs():
    """f = 0: y = relu(x), and the shortcut hands the gradient down unchanged where x > 0."""
    rng = np.random.default_rng(7)
    params = residual_block_params(3, rng)
    params["W2"][:] = 0.0
    x = np.maximum(rng.standard_normal((2, 3, 5, 5)), 0)
    y, cache = residual_block_forward(x, params)
    dy = rng.standard_normal(y.shape)
    grads = residual_block_backward(dy, cache)
    assert np.array_equal(y, x)
    assert np.array_equal(grads["x"], dy * (x > 0))
    assert np.abs(grads["W2"]).sum() > 0                   # the zero branch still learns
    plain = residual_block_backward(dy, residual_block_forward(x, params, shortcut=False)[1])
    assert np.abs(plain["x"]).max() == 0                   # without the shortcut no gradient gets through


def test_residual_block_params_are_he_and_seeded():
    p = residual_block_params(4, np.random.default_rng(0), hidden=6)
    assert p["W1"].shape == (6, 4, 3, 3) and p["W2"].shape == (4, 6, 3, 3)
    assert p["b1"].shape == (6,) and p["b2"].shape == (4,) and not p["b1"].any()
    expected = np.sqrt(2.0 / (4 * 9)) * np.random.default_rng(0).standard_normal((6, 4, 3, 3))
    assert rel_error(p["W1"], expected) < 1e-12          # He: N(0, 2 / fan_in), fan_in = C_in k k
    q = residual_block_params(4, np.random.default_rng(0), hidden=6, gain=1.0, dtype=np.float32)
    assert q["W1"].dtype == np.float32 and rel_error(q["W1"], p["W1"] / np.sqrt(2.0)) < 1e-6


def test_residual_block_bad_input_raises():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 5, 5))
    params = residual_block_params(3, rng)
    with pytest.raises(ValueError, match=r"W2 must be \(3, 3, 3, 3\) to map the 3 hidden maps back to the 3 channels of x .* got shape \(4, 3, 3, 3\)"):
        residual_block_forward(x, {**params, "W2": np.zeros((4, 3, 3, 3)), "b2": np.zeros(4)})
    with pytest.raises(ValueError, match=r"W1 must be \(C_mid, C, k, k\) with k odd .* got shape \(3, 3, 2, 2\)"):
        residual_block_forward(x, {**params, "W1": np.zeros((3, 3, 2, 2))})
    with pytest.raises(ValueError, match=r"residual_block_forward: W1: x has 2 channels .* but W expects 3"):
        residual_block_forward(x[:, :2], params)
    with pytest.raises(ValueError, match=r"residual_block_forward: x: expected a 4-D batch of images"):
        residual_block_forward(x[0], params)
