"""NumPy code taught in notebooks/05b_modern_cnns.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch04a import relu_backward, relu_forward
from nndl_helpers.chapters.ch05a import check_conv_args, check_images, conv2d_backward, conv2d_forward
from nndl_helpers.chapters.ch07b import he_normal_init     # He initialisation, derived in chapter 7b


def residual_block_params(channels, rng, hidden=None, kernel_size=3, gain=math.sqrt(2.0), dtype=np.float64):
    """One residual block's parameters: W1 (hidden, channels, k, k), b1 (hidden,), W2 (channels, hidden, k, k), b2.

    Kernels from He initialisation N(0, gain^2 / fan_in) with fan_in = C_in k k (gain sqrt(2): He, for ReLU),
    biases zero; hidden defaults to channels, rng is a np.random.Generator.
    """
    hidden, k = channels if hidden is None else hidden, kernel_size

    def he(c_out, c_in):
        return he_normal_init(c_in * k * k, c_out * k * k, rng, gain=gain, shape=(c_out, c_in, k, k)).astype(dtype)

    return {"W1": he(hidden, channels), "b1": np.zeros(hidden, dtype),
            "W2": he(channels, hidden), "b2": np.zeros(channels, dtype)}


def residual_block_forward(x, params, *, shortcut=True):
    """Residual block y = relu(x + conv2(relu(conv1(x)))); both convolutions with same padding, stride 1.

    x (N, C, H, W); params a dict W1 (C_mid, C, k, k), b1 (C_mid,), W2 (C, C_mid, k, k), b2 (C,), k odd.
    shortcut=False drops the identity shortcut, y = relu(conv2(relu(conv1(x)))): the "plain" block.
    Returns y (N, C, H, W) and a cache for residual_block_backward.
    """
    check_images(x, "residual_block_forward: x")
    W1_shape, W2_shape = np.shape(params["W1"]), np.shape(params["W2"])
    if len(W1_shape) != 4 or W1_shape[2] != W1_shape[3] or W1_shape[2] % 2 == 0:
        raise ValueError(f"residual_block_forward: W1 must be (C_mid, C, k, k) with k odd (same padding), "
                         f"got shape {W1_shape}")
    k = W1_shape[2]
    check_conv_args(x, params["W1"], params["b1"], 1, k // 2, 1, "residual_block_forward: W1")
    if W2_shape != (x.shape[1], W1_shape[0], k, k):
        raise ValueError(f"residual_block_forward: W2 must be ({x.shape[1]}, {W1_shape[0]}, {k}, {k}) to map the "
                         f"{W1_shape[0]} hidden maps back to the {x.shape[1]} channels of x (x.shape={x.shape}), "
                         f"got shape {W2_shape}")
    z, conv1 = conv2d_forward(x, params["W1"], params["b1"], padding=k // 2)
    h, relu1 = relu_forward(z)
    f, conv2 = conv2d_forward(h, params["W2"], params["b2"], padding=k // 2)
    y, relu2 = relu_forward(x + f if shortcut else f)
    return y, (conv1, relu1, conv2, relu2, shortcut)


def residual_block_backward(dy, cache):
    """Gradients of residual_block_forward: a dict keyed like params (W1, b1, W2, b2), plus "x" (N, C, H, W)."""
    conv1, relu1, conv2, relu2, shortcut = cache
    grads = {}
    ds = relu_backward(dy, relu2)                  # the gradient of s = x + f(x) (of f(x) without the shortcut)
    dh, grads["W2"], grads["b2"] = conv2d_backward(ds, conv2)
    dx_branch, grads["W1"], grads["b1"] = conv2d_backward(relu_backward(dh, relu1), conv1)
    grads["x"] = dx_branch + ds if shortcut else dx_branch    # the shortcut adds ds, unchanged
    return grads
