"""NumPy code taught in notebooks/07b_initialization_regularization.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np


def _shape(fan_in, fan_out, shape):
    """The weight's shape: (fan_in, fan_out) for an affine layer (x @ W), or ``shape`` as given,
    e.g. (C_out, C_in, k_h, k_w) for a convolution with fan_in = C_in k_h k_w."""
    return (int(fan_in), int(fan_out)) if shape is None else tuple(int(s) for s in shape)


def zeros_init(fan_in, fan_out, rng=None, shape=None):
    """All-zero weights: every unit identical, and no gradient reaches earlier layers."""
    return np.zeros(_shape(fan_in, fan_out, shape))


def constant_init(fan_in, fan_out, rng=None, value=0.01, shape=None):
    """All weights equal to ``value``: non-zero signal, but the units of a layer stay identical."""
    return np.full(_shape(fan_in, fan_out, shape), float(value))


def normal_init(fan_in, fan_out, rng, std=0.01, shape=None):
    """N(0, std^2) weights, by default small."""
    return std * rng.standard_normal(_shape(fan_in, fan_out, shape))


def xavier_normal_init(fan_in, fan_out, rng, gain=1.0, shape=None):
    """Glorot & Bengio (2010): N(0, gain^2 * 2 / (fan_in + fan_out))."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal(_shape(fan_in, fan_out, shape))


def xavier_uniform_init(fan_in, fan_out, rng, gain=1.0, shape=None):
    """Glorot & Bengio (2010): U(-r, r) with r = gain * sqrt(6 / (fan_in + fan_out)), the same variance."""
    r = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, size=_shape(fan_in, fan_out, shape))


def he_normal_init(fan_in, fan_out, rng, gain=math.sqrt(2.0), shape=None):
    """He et al. (2015): N(0, gain^2 / fan_in), gain sqrt(2) for ReLU."""
    return gain / math.sqrt(fan_in) * rng.standard_normal(_shape(fan_in, fan_out, shape))


def orthogonal_init(fan_in, fan_out, rng, gain=1.0, shape=None):
    """Saxe et al. (2014): orthonormal columns (or rows, whichever are fewer), scaled by gain.

    QR of a Gaussian matrix, with the signs of R's diagonal moved into Q so that Q is uniformly
    distributed over the orthogonal matrices. A convolution's ``shape`` (C_out, C_in, k_h, k_w), with
    fan_in = C_in k_h k_w and fan_out = C_out, gets the transposed matrix reshaped: one row per output
    channel, the rows (or, when C_out > fan_in, the columns) orthonormal, as in torch.nn.init.orthogonal_.
    """
    if shape is not None and (shape[0] != fan_out or math.prod(shape) != fan_in * fan_out):
        raise ValueError(f"orthogonal_init: shape {tuple(shape)} is not (fan_out={fan_out}, ...) "
                         f"with fan_in * fan_out = {fan_in * fan_out} entries")
    a = rng.standard_normal((max(fan_in, fan_out), min(fan_in, fan_out)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    W = gain * (q if fan_in >= fan_out else q.T)
    return W if shape is None else W.T.reshape(shape)


#: name -> init function (fan_in, fan_out, rng, **kw) -> W of shape (fan_in, fan_out), or of ``shape=``
INITIALIZERS = {"zeros": zeros_init, "constant": constant_init, "normal": normal_init,
                "xavier": xavier_normal_init, "xavier_uniform": xavier_uniform_init,
                "he": he_normal_init, "orthogonal": orthogonal_init}


def init_weight(name, fan_in, fan_out, rng, **kw):
    """A (fan_in, fan_out) weight matrix from the initializer ``name`` (a key of INITIALIZERS); pass
    ``shape=`` for another shape of the same fans (a convolution's kernel)."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose one of {sorted(INITIALIZERS)}")
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fan_in and fan_out must be >= 1, got {fan_in}, {fan_out}")
    return INITIALIZERS[name](fan_in, fan_out, rng, **kw)


def batchnorm_state(num_features, dtype=np.float64):
    """Running statistics of a BatchNorm layer: {"running_mean": 0, "running_var": 1}, each (D,)."""
    return {"running_mean": np.zeros(num_features, dtype), "running_var": np.ones(num_features, dtype)}


def batchnorm_forward(x, gamma, beta, state=None, training=True, momentum=0.1, eps=1e-5):
    """Batch normalization of x (N, D) over the batch, per feature, as torch.nn.BatchNorm1d.

    gamma, beta  (D,) scale and shift.
    state        dict from batchnorm_state. In training mode its running averages are updated in
                 place, r <- (1 - momentum) r + momentum * batch statistic (unbiased variance);
                 in eval mode (training=False) they replace the batch statistics.
    Returns out (N, D) and a cache for batchnorm_backward.
    """
    if x.ndim != 2 or gamma.shape != (x.shape[1],) or beta.shape != (x.shape[1],):
        raise ValueError(f"batchnorm_forward: need x (N, D) and gamma, beta (D,), got {x.shape}, "
                         f"{gamma.shape}, {beta.shape}")
    if training:
        n = x.shape[0]
        if n < 2:
            raise ValueError("batchnorm_forward: training mode needs at least 2 samples per batch")
        mean, var = x.mean(axis=0), x.var(axis=0)
        if state is not None:
            state["running_mean"] *= 1 - momentum
            state["running_mean"] += momentum * mean
            state["running_var"] *= 1 - momentum
            state["running_var"] += momentum * var * n / (n - 1)
    else:
        if state is None:
            raise ValueError("batchnorm_forward: eval mode needs the running statistics (state)")
        mean, var = state["running_mean"], state["running_var"]
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std, training)


def batchnorm_backward(dout, cache):
    """Gradients of BatchNorm: dx (N, D), dgamma (D,), dbeta (D,) from dout (N, D)."""
    x_hat, gamma, inv_std, training = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    if not training:                     # fixed statistics: the layer is affine
        return dx_hat * inv_std, dgamma, dbeta
    dx = inv_std * (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0))
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Layer normalization of x (..., D) over its last axis, as torch.nn.LayerNorm(D).

    gamma, beta (D,). The same computation in training and eval. Returns out (..., D) and a cache.
    """
    if x.shape[-1:] != gamma.shape or gamma.shape != beta.shape:
        raise ValueError(f"layernorm_forward: need x (..., D) and gamma, beta (D,), got {x.shape}, "
                         f"{gamma.shape}, {beta.shape}")
    mean = x.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)


def layernorm_backward(dout, cache):
    """Gradients of LayerNorm: dx (..., D), dgamma (D,), dbeta (D,) from dout (..., D)."""
    x_hat, gamma, inv_std = cache
    D = x_hat.shape[-1]
    dbeta = dout.reshape(-1, D).sum(axis=0)
    dgamma = (dout * x_hat).reshape(-1, D).sum(axis=0)
    dx_hat = dout * gamma
    dx = inv_std * (dx_hat - dx_hat.mean(axis=-1, keepdims=True)
                    - x_hat * (dx_hat * x_hat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def dropout_forward(x, p, training=True, rng=None, keep_mask=None):
    """Inverted dropout: zero each entry of x with probability p, scale the rest by 1 / (1 - p).

    x          any shape.
    p          drop probability in [0, 1).
    training   False (eval) or p == 0: the identity.
    rng        np.random.Generator drawing the mask, or
    keep_mask  a boolean array of x's shape (True = keep), for reproducible tests.
    Returns out (shape of x) and cache = the scaled mask (None for the identity).
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"dropout probability p must lie in [0, 1), got {p!r}")
    if not training or p == 0:
        return x, None
    if keep_mask is None:
        if rng is None:
            raise ValueError("dropout_forward in training mode needs rng (or keep_mask)")
        keep_mask = rng.random(x.shape) >= p
    elif np.shape(keep_mask) != np.shape(x):
        raise ValueError(f"keep_mask has shape {np.shape(keep_mask)}, x has shape {np.shape(x)}")
    scaled_mask = np.asarray(keep_mask, dtype=x.dtype) / x.dtype.type(1 - p)
    return x * scaled_mask, scaled_mask


def dropout_backward(dout, cache):
    """dx = dout * mask / (1 - p): the gradient flows only through the kept units."""
    return dout if cache is None else dout * cache
