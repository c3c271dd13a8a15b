"""NumPy code taught in notebooks/05a_convolution.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def check_images(x, name="x", channels=None, size=None, value_range=None):
    """The course's one validator of image batches: x unchanged, or a ValueError saying what is wrong.

    x            a NumPy array or a torch tensor (read by duck typing: this module never imports torch)
                 of shape (N, C, H, W) with N >= 1 and a floating dtype.
    channels     the exact C required, or None for any; size: the exact (H, W), or None for any.
    value_range  (lo, hi) every value must lie in (e.g. (0, 1) for Bernoulli means), or None.
    The message names the argument `name`, its shape and what was expected.
    """
    c = "C" if channels is None else channels
    h, w = ("H", "W") if size is None else tuple(size)
    expected = f"(N, {c}, {h}, {w})"
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{name}: expected an array or tensor of images {expected}, got a {type(x).__name__}")
    shape = tuple(int(s) for s in x.shape)
    if len(shape) != 4:
        hint = ""
        if len(shape) == 3:
            hint = "; add the channel axis with x[:, None]"
        elif len(shape) == 2 and channels is not None and size is not None:
            hint = f"; reshape flat rows with x.reshape(-1, {c}, {h}, {w})"
        raise ValueError(f"{name}: expected a 4-D batch of images {expected}, got shape {shape}{hint}")
    if shape[0] < 1:
        raise ValueError(f"{name}: expected at least one image {expected} with N >= 1, got shape {shape}")
    if (channels is not None and shape[1] != channels) or (size is not None and shape[2:] != (h, w)):
        raise ValueError(f"{name}: expected images of shape {expected}, got shape {shape}")
    is_float = getattr(x.dtype, "is_floating_point", None)    # torch.dtype has it, np.dtype does not
    if is_float is None:
        is_float = np.asarray(x).dtype.kind == "f"
    if not is_float:
        raise ValueError(f"{name}: expected a floating dtype (float32 or float64), got {x.dtype} "
                         f"with shape {shape}; convert it, e.g. x.astype(np.float32) / 255 for 8-bit pixels")
    if value_range is not None:
        lo, hi = float(x.min()), float(x.max())
        if lo < value_range[0] or hi > value_range[1]:
            raise ValueError(f"{name}: expected values in [{value_range[0]:g}, {value_range[1]:g}], "
                             f"got [{lo:g}, {hi:g}] (shape {shape})")
    return x


from numpy.lib.stride_tricks import sliding_window_view


def conv_output_size(n, kernel_size, stride=1, padding=0, dilation=1):
    """Length of a convolution's (or pooling's) output along one axis of length n:

    floor((n + 2 P - D (K - 1) - 1) / S) + 1, which for D = 1 is floor((n + 2 P - K) / S) + 1.
    """
    return (n + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _check_window_fits(x_shape, kh, kw, padding, dilation, name):
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    padded_h, padded_w = x_shape[2] + 2 * padding, x_shape[3] + 2 * padding
    if span_h > padded_h or span_w > padded_w:
        raise ValueError(f"{name}: the {span_h}x{span_w} window (kernel {kh}x{kw}, dilation {dilation}) is "
                         f"larger than the padded input {padded_h}x{padded_w} (x.shape={x_shape}, padding={padding})")


def check_conv_args(x, W, b, stride, padding, dilation, name="conv2d"):
    """Raise a ValueError naming the shapes if conv2d(x, W, b) with these settings is impossible."""
    check_images(x, f"{name}: x")
    if np.ndim(W) != 4:
        raise ValueError(f"{name}: W must be 4-D (C_out, C_in, KH, KW), got shape {np.shape(W)}")
    if np.shape(b) != (W.shape[0],):
        raise ValueError(f"{name}: b has shape {np.shape(b)}, but W.shape={W.shape} needs ({W.shape[0]},)")
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"{name}: x has {x.shape[1]} channels (x.shape={x.shape}) "
                         f"but W expects {W.shape[1]} (W.shape={W.shape})")
    if stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"{name}: need stride >= 1, dilation >= 1 and padding >= 0, "
                         f"got stride={stride}, padding={padding}, dilation={dilation}")
    _check_window_fits(x.shape, W.shape[2], W.shape[3], padding, dilation, name)


def check_pool_args(x, pool_size, stride, name="pool"):
    """Raise a ValueError naming the shapes if pooling x with this window is impossible."""
    check_images(x, f"{name}: x")
    if pool_size < 1 or stride < 1:
        raise ValueError(f"{name}: need pool_size >= 1 and stride >= 1, got pool_size={pool_size}, stride={stride}")
    _check_window_fits(x.shape, pool_size, pool_size, 0, 1, name)


def _pad_hw(x, padding):
    """Zero-pad the two spatial axes of (N, C, H, W) by `padding` on every side."""
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def conv2d_forward_naive(x, W, b, stride=1, padding=0, dilation=1):
    """Convolution layer (a cross-correlation, like torch.nn.functional.conv2d), with explicit loops.

    Inputs:  x (N, C_in, H, W_in); W (C_out, C_in, KH, KW); b (C_out,);
             stride S, zero padding P and dilation D, the same along both axes.
    Returns: out (N, C_out, H_out, W_out), H_out = floor((H + 2P - D(KH-1) - 1) / S) + 1 (same for W_out),
             and a cache for conv2d_backward_naive.
    """
    check_conv_args(x, W, b, stride, padding, dilation, "conv2d_forward_naive")
    N, C_in, H, W_in = x.shape
    C_out, _, KH, KW = W.shape
    H_out = conv_output_size(H, KH, stride, padding, dilation)
    W_out = conv_output_size(W_in, KW, stride, padding, dilation)
    x_pad = _pad_hw(x, padding)
    out = np.zeros((N, C_out, H_out, W_out), dtype=np.result_type(x, W))
    for n in range(N):
        for p in range(C_out):
            for i in range(H_out):
                for j in range(W_out):
                    # the window of output pixel (i, j): every D-th pixel from (i S, j S), all channels
                    rows = slice(i * stride, i * stride + dilation * (KH - 1) + 1, dilation)
                    cols = slice(j * stride, j * stride + dilation * (KW - 1) + 1, dilation)
                    out[n, p, i, j] = np.sum(x_pad[n, :, rows, cols] * W[p]) + b[p]
    return out, (x, W, stride, padding, dilation)


def conv2d_backward_naive(dout, cache):
    """Backward pass of conv2d_forward_naive, with the same loops.

    Inputs:  dout (N, C_out, H_out, W_out), the upstream gradient dL/dout; cache from the forward pass.
    Returns: dx (N, C_in, H, W_in), dW (C_out, C_in, KH, KW), db (C_out,).
    """
    x, W, stride, padding, dilation = cache
    N, C_in, H, W_in = x.shape
    C_out, _, KH, KW = W.shape
    _, _, H_out, W_out = dout.shape
    x_pad = _pad_hw(x, padding)
    dx_pad = np.zeros_like(x_pad, dtype=np.result_type(x, dout))
    dW = np.zeros_like(W, dtype=np.result_type(W, dout))
    for n in range(N):
        for p in range(C_out):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * stride, i * stride + dilation * (KH - 1) + 1, dilation)
                    cols = slice(j * stride, j * stride + dilation * (KW - 1) + 1, dilation)
                    # this output used the window once with weight W[p]: send its gradient to both
                    dW[p] += dout[n, p, i, j] * x_pad[n, :, rows, cols]
                    dx_pad[n, :, rows, cols] += dout[n, p, i, j] * W[p]
    db = dout.sum(axis=(0, 2, 3))
    dx = dx_pad[:, :, padding:padding + H, padding:padding + W_in]  # the padding is not an input
    return dx, dW, db


def _windows(x_pad, kh, kw, stride, dilation):
    """All receptive fields of a padded (N, C, H, W) array as a view (N, C, H_out, W_out, kh, kw); no copy."""
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    view = sliding_window_view(x_pad, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::stride, ::stride, ::dilation, ::dilation]


def conv2d_forward(x, W, b, stride=1, padding=0, dilation=1):
    """Convolution layer, vectorised: im2col by a strided view, then one matrix product for the batch.

    Inputs:  x (N, C_in, H, W_in); W (C_out, C_in, KH, KW); b (C_out,); stride, padding, dilation (ints).
    Returns: out (N, C_out, H_out, W_out), the same numbers as conv2d_forward_naive, and a cache
             for conv2d_backward. Keeps the dtype of x and W (use float32 for speed).
    """
    check_conv_args(x, W, b, stride, padding, dilation, "conv2d_forward")
    N, C_in, H, W_in = x.shape
    C_out, _, KH, KW = W.shape
    windows = _windows(_pad_hw(x, padding), KH, KW, stride, dilation)   # view (N, C_in, H_out, W_out, KH, KW)
    H_out, W_out = windows.shape[2:4]
    # im2col: rows (c, u, v), columns (n, i, j) for the whole batch; this reshape is the only copy
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(C_in * KH * KW, N * H_out * W_out)
    out = W.reshape(C_out, -1) @ cols                                  # (C_out, N * H_out * W_out)
    out += b.reshape(C_out, 1)
    out = out.reshape(C_out, N, H_out, W_out).transpose(1, 0, 2, 3)    # a view in (N, C_out, ...) order
    return out, (x.shape, W, cols, stride, padding, dilation)


def conv2d_backward(dout, cache, *, need_dx=True):
    """Backward pass of conv2d_forward.

    Inputs:  dout (N, C_out, H_out, W_out); cache from conv2d_forward;
             need_dx=False skips dx (returned as None), e.g. for a first layer fed with images.
    Returns: dx (N, C_in, H, W_in), dW (C_out, C_in, KH, KW), db (C_out,).
    """
    x_shape, W, cols, stride, padding, dilation = cache
    N, C_in, H, W_in = x_shape
    C_out, _, KH, KW = W.shape
    H_out, W_out = dout.shape[2:]
    delta = dout.transpose(1, 0, 2, 3).reshape(C_out, N * H_out * W_out)  # same column order as cols
    db = delta.sum(axis=1)
    dW = (delta @ cols.T).reshape(W.shape)
    if not need_dx:
        return None, dW, db
    # col2im, one kernel offset (u, v) at a time: the rows (., u, v) of W^T delta belong to one strided
    # slice of the padded input, so each step is a small product and one vectorised +=
    dx_pad = np.zeros((C_in, N, H + 2 * padding, W_in + 2 * padding), dtype=delta.dtype)
    for u in range(KH):
        for v in range(KW):
            r, c = u * dilation, v * dilation
            dx_pad[:, :, r:r + stride * (H_out - 1) + 1:stride, c:c + stride * (W_out - 1) + 1:stride] += (
                (W[:, :, u, v].T @ delta).reshape(C_in, N, H_out, W_out))
    dx = dx_pad[:, :, padding:padding + H, padding:padding + W_in].transpose(1, 0, 2, 3)
    return dx, dW, db


def max_pool_forward_naive(x, pool_size=2, stride=None):
    """Max pooling with explicit loops. x (N, C, H, W) -> out (N, C, H_out, W_out), cache.

    stride defaults to pool_size (non-overlapping windows); H_out = floor((H - pool_size) / stride) + 1.
    """
    stride = pool_size if stride is None else stride
    check_pool_args(x, pool_size, stride, "max_pool_forward_naive")
    N, C, H, W = x.shape
    H_out, W_out = conv_output_size(H, pool_size, stride), conv_output_size(W, pool_size, stride)
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = x[n, c, i * stride:i * stride + pool_size, j * stride:j * stride + pool_size].max()
    return out, (x, pool_size, stride)


def max_pool_backward_naive(dout, cache):
    """Backward of max_pool_forward_naive: dout (N, C, H_out, W_out) -> dx (N, C, H, W)."""
    x, k, s = cache
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x, dtype=np.result_type(x, dout))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * s:i * s + k, j * s:j * s + k]
                    u, v = np.unravel_index(np.argmax(window), window.shape)  # first maximum wins
                    dx[n, c, i * s + u, j * s + v] += dout[n, c, i, j]
    return dx


def avg_pool_forward_naive(x, pool_size=2, stride=None):
    """Average pooling with explicit loops. x (N, C, H, W) -> out (N, C, H_out, W_out), cache."""
    stride = pool_size if stride is None else stride
    check_pool_args(x, pool_size, stride, "avg_pool_forward_naive")
    N, C, H, W = x.shape
    H_out, W_out = conv_output_size(H, pool_size, stride), conv_output_size(W, pool_size, stride)
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = x[n, c, i * stride:i * stride + pool_size, j * stride:j * stride + pool_size].mean()
    return out, (x.shape, pool_size, stride)


def avg_pool_backward_naive(dout, cache):
    """Backward of avg_pool_forward_naive: every pixel of a window gets dout / pool_size^2."""
    x_shape, k, s = cache
    N, C, H_out, W_out = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    dx[n, c, i * s:i * s + k, j * s:j * s + k] += dout[n, c, i, j] / (k * k)
    return dx


def _offset_view(x, u, v, stride, H_out, W_out):
    """Element (u, v) of every pooling window, as one strided view (N, C, H_out, W_out)."""
    return x[:, :, u:u + stride * (H_out - 1) + 1:stride, v:v + stride * (W_out - 1) + 1:stride]


def max_pool_forward(x, pool_size=2, stride=None):
    """Max pooling, vectorised over all windows. x (N, C, H, W) -> out (N, C, H_out, W_out), cache.

    stride defaults to pool_size. Loops only over the pool_size^2 offsets inside a window and remembers
    which offset won (the first one on ties, like PyTorch) for the backward pass.
    """
    stride = pool_size if stride is None else stride
    check_pool_args(x, pool_size, stride, "max_pool_forward")
    N, C, H, W = x.shape
    H_out, W_out = conv_output_size(H, pool_size, stride), conv_output_size(W, pool_size, stride)
    out = _offset_view(x, 0, 0, stride, H_out, W_out).copy()
    winner = np.zeros(out.shape, dtype=np.int16)          # offset u * pool_size + v of each window's max
    for u in range(pool_size):
        for v in range(pool_size):
            if u == v == 0:
                continue
            candidate = _offset_view(x, u, v, stride, H_out, W_out)
            larger = candidate > out                        # strictly larger: earlier offsets win ties
            np.copyto(out, candidate, where=larger)
            np.copyto(winner, u * pool_size + v, where=larger)
    return out, (x.shape, winner, pool_size, stride)


def max_pool_backward(dout, cache):
    """Backward of max_pool_forward: each window's gradient goes to its winning pixel."""
    x_shape, winner, k, s = cache
    H_out, W_out = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for u in range(k):
        for v in range(k):
            _offset_view(dx, u, v, s, H_out, W_out)[...] += dout * (winner == u * k + v)
    return dx


def avg_pool_forward(x, pool_size=2, stride=None):
    """Average pooling, vectorised over all windows. x (N, C, H, W) -> out (N, C, H_out, W_out), cache."""
    stride = pool_size if stride is None else stride
    check_pool_args(x, pool_size, stride, "avg_pool_forward")
    H_out, W_out = conv_output_size(x.shape[2], pool_size, stride), conv_output_size(x.shape[3], pool_size, stride)
    out = _offset_view(x, 0, 0, stride, H_out, W_out).copy()
    for u in range(pool_size):
        for v in range(pool_size):
            if u or v:
                out += _offset_view(x, u, v, stride, H_out, W_out)
    out /= pool_size * pool_size
    return out, (x.shape, pool_size, stride)


def avg_pool_backward(dout, cache):
    """Backward of avg_pool_forward: every pixel of a window gets dout / pool_size^2."""
    x_shape, k, s = cache
    H_out, W_out = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    share = dout / (k * k)
    for u in range(k):
        for v in range(k):
            _offset_view(dx, u, v, s, H_out, W_out)[...] += share
    return dx


from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch04a import affine_backward, affine_forward, relu_backward, relu_forward
from nndl_helpers.chapters.ch07b import he_normal_init     # He initialisation, derived in chapter 7b


def lenet5_params(seed=0, dtype=np.float32):
    """LeNet-5's initial parameters: He-initialised weights (chapter 7b), zero biases.

    W1 (6, 1, 5, 5) and W2 (16, 6, 5, 5) are convolution kernels, fan_in = C_in * 5 * 5;
    W3 (400, 120), W4 (120, 84), W5 (84, 10) are affine weights (x @ W); b1..b5 the biases.
    """
    rng = np.random.default_rng(seed)

    def he(fan_in, fan_out, shape=None):
        return he_normal_init(fan_in, fan_out, rng, shape=shape).astype(dtype)

    return {"W1": he(1 * 25, 6 * 25, shape=(6, 1, 5, 5)), "b1": np.zeros(6, dtype),
            "W2": he(6 * 25, 16 * 25, shape=(16, 6, 5, 5)), "b2": np.zeros(16, dtype),
            "W3": he(400, 120), "b3": np.zeros(120, dtype),
            "W4": he(120, 84), "b4": np.zeros(84, dtype),
            "W5": he(84, 10), "b5": np.zeros(10, dtype)}


class LeNet5:
    """LeNet-5 with ReLU and max pooling, forward and backward in NumPy.

        conv 6@5x5 pad 2 -> ReLU -> maxpool 2 -> conv 16@5x5 -> ReLU -> maxpool 2
        -> affine 400->120 -> ReLU -> affine 120->84 -> ReLU -> affine 84->10

    X: (N, 1, 28, 28) images. params: dict W1, b1 (conv 1), W2, b2 (conv 2), W3..W5, b3..b5 (affine,
    W of shape (D_in, D_out)), from lenet5_params; an optimizer updates these arrays in place.
    """

    def __init__(self, seed=0, dtype=np.float32):
        self.params = lenet5_params(seed, dtype)

    def forward(self, X):
        """Class scores (N, 10) and the cache for backward."""
        check_images(X, "LeNet5: X", channels=1, size=(28, 28))
        p, cache = self.params, {}
        z, cache["conv1"] = conv2d_forward(X, p["W1"], p["b1"], padding=2)
        a, cache["relu1"] = relu_forward(z)
        a, cache["pool1"] = max_pool_forward(a, 2)
        z, cache["conv2"] = conv2d_forward(a, p["W2"], p["b2"])
        a, cache["relu2"] = relu_forward(z)
        a, cache["pool2"] = max_pool_forward(a, 2)
        cache["pool2_shape"] = a.shape
        z, cache["fc3"] = affine_forward(a.reshape(len(X), -1), p["W3"], p["b3"])
        a, cache["relu3"] = relu_forward(z)
        z, cache["fc4"] = affine_forward(a, p["W4"], p["b4"])
        a, cache["relu4"] = relu_forward(z)
        scores, cache["fc5"] = affine_forward(a, p["W5"], p["b5"])
        return scores, cache

    def backward(self, dscores, cache, *, need_dx=False):
        """Gradients of every parameter (a dict keyed like params) from dL/dscores (N, 10). Training skips the
        pixels' gradient; need_dx=True adds g["x"] = dL/dX (N, 1, 28, 28) (saliency and attacks, chapter 16a)."""
        g = {}
        da, g["W5"], g["b5"] = affine_backward(dscores, cache["fc5"])
        da, g["W4"], g["b4"] = affine_backward(relu_backward(da, cache["relu4"]), cache["fc4"])
        da, g["W3"], g["b3"] = affine_backward(relu_backward(da, cache["relu3"]), cache["fc3"])
        da = max_pool_backward(da.reshape(cache["pool2_shape"]), cache["pool2"])
        da, g["W2"], g["b2"] = conv2d_backward(relu_backward(da, cache["relu2"]), cache["conv2"])
        da = max_pool_backward(da, cache["pool1"])
        dx, g["W1"], g["b1"] = conv2d_backward(relu_backward(da, cache["relu1"]), cache["conv1"], need_dx=need_dx)
        return {**g, "x": dx} if need_dx else g

    def loss(self, X, y):
        """Mean softmax cross-entropy of labels y (N,) and the gradients: (loss, grads)."""
        scores, cache = self.forward(X)
        loss, dscores = softmax_cross_entropy(scores, y)
        return loss, self.backward(dscores, cache)

    def __call__(self, X, batch_size=500):
        """The class scores (N, 10) alone, in batches to bound the memory of the im2col copies."""
        check_images(X, "LeNet5: X", channels=1, size=(28, 28))
        return np.concatenate([self.forward(X[i:i + batch_size])[0] for i in range(0, len(X), batch_size)])

    def predict(self, X, batch_size=500):
        """Predicted labels (N,)."""
        return self(X, batch_size).argmax(axis=1)
