"""NumPy code taught in notebooks/16b_segmentation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch05a import check_images, conv2d_backward, conv2d_forward


def conv_transpose_output_size(n, kernel_size, stride=1, padding=0):
    """Length of a transposed convolution's output along an axis of length n: (n - 1) S - 2 P + K."""
    return (n - 1) * stride - 2 * padding + kernel_size


def dilate_hw(x, stride):
    """Insert stride - 1 zeros between neighbouring pixels of (N, C, H, W): (N, C, (H-1)S+1, (W-1)S+1)."""
    if stride == 1:
        return x
    N, C, H, W = x.shape
    out = np.zeros((N, C, (H - 1) * stride + 1, (W - 1) * stride + 1), dtype=x.dtype)
    out[:, :, ::stride, ::stride] = x
    return out


def conv_transpose2d_forward(x, W, b, *, stride=1, padding=0):
    """Transposed convolution, as torch.nn.functional.conv_transpose2d (square kernels, no output_padding).

    Inputs:  x (N, C_in, H, W_in); W (C_in, C_out, K, K), PyTorch's layout; b (C_out,);
             stride S >= 1 and zero padding 0 <= P <= K - 1, the same along both axes.
    Returns: out (N, C_out, (H-1)S - 2P + K, (W_in-1)S - 2P + K) and a cache for conv_transpose2d_backward.
    How (NNDL §5.5.1): S - 1 zeros between the input pixels, then chapter 5a's stride-1 conv2d_forward
    with padding K - 1 - P and the kernel rotated by 180 degrees, its two channel axes swapped.
    """
    check_images(x, "conv_transpose2d_forward: x")
    if np.ndim(W) != 4 or W.shape[0] != x.shape[1] or W.shape[2] != W.shape[3]:
        raise ValueError(f"conv_transpose2d_forward: W must have shape (C_in={x.shape[1]}, C_out, K, K), "
                         f"got {np.shape(W)} for x.shape={x.shape}")
    K = W.shape[2]
    if np.shape(b) != (W.shape[1],):
        raise ValueError(f"conv_transpose2d_forward: b has shape {np.shape(b)}, but W.shape={W.shape} "
                         f"needs ({W.shape[1]},)")
    if stride < 1 or not 0 <= padding <= K - 1:
        raise ValueError(f"conv_transpose2d_forward: need stride >= 1 and 0 <= padding <= K - 1 = {K - 1}, "
                         f"got stride={stride}, padding={padding}")
    W_conv = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))   # (C_out, C_in, K, K)
    out, conv_cache = conv2d_forward(dilate_hw(x, stride), W_conv, b, padding=K - 1 - padding)
    return out, (conv_cache, stride)


def conv_transpose2d_backward(dout, cache):
    """Backward of conv_transpose2d_forward: dout (N, C_out, H_out, W_out) -> dx, dW, db.

    The forward was a dilation, then a convolution: chapter 5a's conv2d_backward, then the dilation's
    backward (keep every S-th pixel); the kernel's gradient is rotated and transposed back to W's layout.
    """
    conv_cache, stride = cache
    dx_dilated, dW_conv, db = conv2d_backward(dout, conv_cache)
    return dx_dilated[:, :, ::stride, ::stride], dW_conv.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], db


from nndl_helpers.chapters.ch03 import binary_cross_entropy_with_logits
from nndl_helpers.chapters.ch04a import relu_backward, relu_forward
from nndl_helpers.chapters.ch05a import max_pool_backward, max_pool_forward
from nndl_helpers.chapters.ch07b import he_normal_init     # He initialisation, derived in chapter 7b


def fcn_params(channels=8, foreground_rate=0.5, seed=0, dtype=np.float32):
    """NumpyFCN's initial parameters: He-initialised weights (chapter 7b), zero biases except b4.

    W1 (C, 1, 3, 3), W2 (2C, C, 3, 3): convolutions, fan_in = C_in * 9; W3 (2C, C, 4, 4), W4 (C, 1, 4, 4):
    transposed convolutions, fan_in = C_in * 4 (a stride-2 4x4 one sums 2x2 input pixels into each output);
    b4 = logit of foreground_rate, so that training starts from the right share of foreground.
    """
    rng, c = np.random.default_rng(seed), int(channels)

    def he(fan_in, shape):
        return he_normal_init(fan_in, shape[0], rng, shape=shape).astype(dtype)

    return {"W1": he(9, (c, 1, 3, 3)), "b1": np.zeros(c, dtype),
            "W2": he(9 * c, (2 * c, c, 3, 3)), "b2": np.zeros(2 * c, dtype),
            "W3": he(4 * 2 * c, (2 * c, c, 4, 4)), "b3": np.zeros(c, dtype),
            "W4": he(4 * c, (c, 1, 4, 4)), "b4": np.full(1, np.log(foreground_rate / (1 - foreground_rate)), dtype)}


class NumpyFCN:
    """A small fully convolutional network for a binary mask, forward and backward in NumPy.

        conv 3x3 (1 -> C) -> ReLU -> maxpool 2 -> conv 3x3 (C -> 2C) -> ReLU -> maxpool 2       (H -> H/4)
        -> transposed conv 4x4 stride 2 (2C -> C) -> ReLU -> transposed conv 4x4 stride 2 (C -> 1)   (H/4 -> H)

    X: (N, 1, H, W) images, H and W multiples of 4; output: one logit per pixel, (N, 1, H, W).
    params: W1, b1, W2, b2 (convolutions), W3, b3, W4, b4 (transposed convolutions), from fcn_params;
    an optimizer updates these arrays in place.
    """

    def __init__(self, channels=8, foreground_rate=0.5, seed=0, dtype=np.float32):
        self.params = fcn_params(channels, foreground_rate, seed, dtype)

    def forward(self, X):
        """Per-pixel logits (N, 1, H, W) and the cache for backward."""
        check_images(X, "NumpyFCN: X", channels=1)
        if X.shape[2] % 4 or X.shape[3] % 4:
            raise ValueError(f"NumpyFCN: the height and width of X must be multiples of 4, got shape {X.shape}")
        p, cache = self.params, {}
        z, cache["conv1"] = conv2d_forward(X, p["W1"], p["b1"], padding=1)
        a, cache["relu1"] = relu_forward(z)
        a, cache["pool1"] = max_pool_forward(a, 2)
        z, cache["conv2"] = conv2d_forward(a, p["W2"], p["b2"], padding=1)
        a, cache["relu2"] = relu_forward(z)
        a, cache["pool2"] = max_pool_forward(a, 2)
        z, cache["up3"] = conv_transpose2d_forward(a, p["W3"], p["b3"], stride=2, padding=1)
        a, cache["relu3"] = relu_forward(z)
        logits, cache["up4"] = conv_transpose2d_forward(a, p["W4"], p["b4"], stride=2, padding=1)
        return logits, cache

    def backward(self, dlogits, cache):
        """Gradients of every parameter (a dict keyed like params) from dL/dlogits (N, 1, H, W)."""
        g = {}
        da, g["W4"], g["b4"] = conv_transpose2d_backward(dlogits, cache["up4"])
        da, g["W3"], g["b3"] = conv_transpose2d_backward(relu_backward(da, cache["relu3"]), cache["up3"])
        da = max_pool_backward(da, cache["pool2"])
        da, g["W2"], g["b2"] = conv2d_backward(relu_backward(da, cache["relu2"]), cache["conv2"])
        da = max_pool_backward(da, cache["pool1"])
        _, g["W1"], g["b1"] = conv2d_backward(relu_backward(da, cache["relu1"]), cache["conv1"], need_dx=False)
        return g

    def loss(self, X, mask):
        """Mean per-pixel binary cross-entropy of a 0/1 mask (N, 1, H, W), and the gradients: (loss, grads)."""
        logits, cache = self.forward(X)
        loss, dlogits = binary_cross_entropy_with_logits(logits, mask)
        return loss, self.backward(dlogits, cache)

    def __call__(self, X, batch_size=250):
        """The logits (N, 1, H, W) alone, in batches."""
        return np.concatenate([self.forward(X[i:i + batch_size])[0] for i in range(0, len(X), batch_size)])


from nndl_helpers.chapters.ch03 import confusion_matrix


def segmentation_scores(y_true, y_pred, num_classes):
    """Pixel accuracy, per-class IoU and mean IoU of predicted label maps, from one confusion matrix.

    y_true, y_pred: integer label maps of the same shape (any number of axes), values in [0, num_classes).
    C[i, j] = pixels of class i predicted as j, over all pixels given;
      pixel_accuracy = trace(C) / sum(C);
      iou[i] = C[i, i] / (row sum i + column sum i - C[i, i]) = TP / (TP + FN + FP), NaN where that union is 0;
      miou = the mean of iou over the classes with a non-empty union (background included).
    Returns a dict with pixel_accuracy (float), iou (num_classes,), miou (float) and confusion (C).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"segmentation_scores: y_true {y_true.shape} and y_pred {y_pred.shape} must be "
                         f"non-empty label maps of the same shape")
    if y_true.dtype.kind not in "iu" or y_pred.dtype.kind not in "iu":
        raise ValueError(f"segmentation_scores: expected integer labels, got {y_true.dtype} and {y_pred.dtype}; "
                         f"take argmax over the class axis of scores first")
    C = confusion_matrix(y_true.ravel(), y_pred.ravel(), num_classes)
    tp = np.diag(C).astype(np.float64)
    union = C.sum(axis=0) + C.sum(axis=1) - tp
    iou = np.full(num_classes, np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    return {"pixel_accuracy": float(tp.sum() / C.sum()), "iou": iou, "miou": float(np.nanmean(iou)), "confusion": C}
