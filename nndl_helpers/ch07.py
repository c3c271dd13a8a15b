"""Code taught in notebooks/07_optimization_regularization.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np


class Optimizer:
    """Base class of the optimizers: ``step(params, grads)`` updates the arrays in ``params`` in place.

    params, grads  dicts name -> np.ndarray of equal shapes (e.g. ``MLP.params`` and the gradients
                   returned by ``MLP.loss``). State (velocities, moment estimates) is kept per name.
    lr             learning rate; a schedule may change ``opt.lr`` between steps.
    weight_decay   lambda >= 0. Added to the gradient as lambda * theta (the gradient of an L2
                   penalty), as torch.optim does, except in AdamW, which decouples it.
    """

    decoupled_weight_decay = False

    def __init__(self, lr, weight_decay=0.0):
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"{type(self).__name__}: lr must be a number >= 0, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.state = {}   # name -> dict of arrays
        self.t = 0        # steps taken

    def step(self, params, grads):
        missing = [name for name in params if name not in grads]
        if missing:
            raise ValueError(f"{type(self).__name__}.step: no gradient for {missing}")
        self.t += 1
        for name, p in params.items():
            g = np.asarray(grads[name])
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient of {name!r} has shape {g.shape}, "
                                 f"parameter has shape {p.shape}")
            if self.weight_decay and self.decoupled_weight_decay:
                p *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                g = g + self.weight_decay * p
            self._update(p, g, self.state.setdefault(name, {}))

    def _update(self, p, g, state):
        """Update one parameter array p in place, given its gradient g and its state dict."""
        raise NotImplementedError

    def __repr__(self):
        hyper = {k: v for k, v in vars(self).items() if k not in ("state", "t")}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in hyper.items())})"


class SGD(Optimizer):
    """SGD, with optional (heavy-ball or Nesterov) momentum, exactly as torch.optim.SGD:

        v <- momentum * v + g   (v = g at the first step)
        theta <- theta - lr * v                      (heavy ball)
        theta <- theta - lr * (g + momentum * v)     (nesterov=True)
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _update(self, p, g, state):
        if self.momentum:
            v = state.get("velocity")
            if v is None:
                v = state["velocity"] = np.array(g, dtype=p.dtype)
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= self.lr * g


class Momentum(SGD):
    """SGD with heavy-ball momentum (rho = 0.9 by default)."""

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(lr, momentum=momentum, nesterov=False, weight_decay=weight_decay)


class Nesterov(SGD):
    """SGD with Nesterov momentum: the gradient step is taken from the look-ahead point."""

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al., 2011), as torch.optim.Adagrad: G <- G + g^2, theta <- theta - lr g / (sqrt(G) + eps)."""

    def __init__(self, lr=0.01, eps=1e-10, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.eps = float(eps)

    def _update(self, p, g, state):
        G = state.setdefault("sum_sq", np.zeros_like(p))
        G += g * g
        p -= self.lr * g / (np.sqrt(G) + self.eps)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, 2012), as torch.optim.RMSprop (beta is its `alpha`):

        G <- beta G + (1 - beta) g^2,    theta <- theta - lr g / (sqrt(G) + eps)
    """

    def __init__(self, lr=0.01, beta=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        _check_beta("beta", beta)
        self.beta, self.eps = float(beta), float(eps)

    def _update(self, p, g, state):
        G = state.setdefault("mean_sq", np.zeros_like(p))
        G *= self.beta
        G += (1 - self.beta) * g * g
        p -= self.lr * g / (np.sqrt(G) + self.eps)


class AdaDelta(Optimizer):
    """AdaDelta (Zeiler, 2012), as torch.optim.Adadelta (beta is its `rho`):

        G <- beta G + (1 - beta) g^2
        delta = -sqrt(X + eps) / sqrt(G + eps) * g
        X <- beta X + (1 - beta) delta^2,    theta <- theta + lr * delta
    """

    def __init__(self, lr=1.0, beta=0.9, eps=1e-6, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        _check_beta("beta", beta)
        self.beta, self.eps = float(beta), float(eps)

    def _update(self, p, g, state):
        G = state.setdefault("mean_sq_grad", np.zeros_like(p))
        X = state.setdefault("mean_sq_delta", np.zeros_like(p))
        G *= self.beta
        G += (1 - self.beta) * g * g
        delta = -np.sqrt(X + self.eps) / np.sqrt(G + self.eps) * g
        X *= self.beta
        X += (1 - self.beta) * delta * delta
        p += self.lr * delta


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as torch.optim.Adam:

        M <- b1 M + (1 - b1) g,   G <- b2 G + (1 - b2) g^2
        theta <- theta - lr * M_hat / (sqrt(G_hat) + eps),  M_hat = M / (1 - b1^t),  G_hat = G / (1 - b2^t)

    weight_decay adds lambda * theta to g (an L2 penalty); for decoupled decay use AdamW.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        _check_beta("betas[0]", betas[0])
        _check_beta("betas[1]", betas[1])
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        M = state.setdefault("m", np.zeros_like(p))
        G = state.setdefault("v", np.zeros_like(p))
        M *= beta1
        M += (1 - beta1) * g
        G *= beta2
        G += (1 - beta2) * g * g
        bias1, bias2 = 1 - beta1 ** self.t, 1 - beta2 ** self.t
        p -= (self.lr / bias1) * M / (np.sqrt(G) / math.sqrt(bias2) + self.eps)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019), as torch.optim.AdamW: theta <- (1 - lr lambda) theta, then Adam."""

    decoupled_weight_decay = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)


def _check_beta(name, value):
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


#: name -> class; ``make_optimizer`` and the sliders pick optimizers from here.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adadelta": AdaDelta, "adam": Adam, "adamw": AdamW}


def make_optimizer(name, **hyper):
    """An optimizer by name (a key of OPTIMIZERS, any case), e.g. make_optimizer("adam", lr=1e-3)."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[key](**hyper)


def torch_optimizer_like(optimizer, tensors):
    """The torch.optim optimizer with the same hyperparameters as ``optimizer``, over ``tensors``."""
    import torch

    o, wd = optimizer, optimizer.weight_decay
    if isinstance(o, SGD):
        return torch.optim.SGD(tensors, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=wd)
    if isinstance(o, AdaGrad):
        return torch.optim.Adagrad(tensors, lr=o.lr, eps=o.eps, weight_decay=wd)
    if isinstance(o, RMSprop):
        return torch.optim.RMSprop(tensors, lr=o.lr, alpha=o.beta, eps=o.eps, weight_decay=wd)
    if isinstance(o, AdaDelta):
        return torch.optim.Adadelta(tensors, lr=o.lr, rho=o.beta, eps=o.eps, weight_decay=wd)
    if isinstance(o, AdamW):
        return torch.optim.AdamW(tensors, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=wd)
    if isinstance(o, Adam):
        return torch.optim.Adam(tensors, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=wd)
    raise ValueError(f"no torch.optim counterpart known for {type(o).__name__}")


def compare_optimizer_with_torch(optimizer, shapes, steps=5, seed=0):
    """Run ``optimizer`` and its torch.optim twin for ``steps`` steps on the same random gradients (float64).

    Returns the largest relative error between the two displacements theta_t - theta_0, over all
    steps and parameters (displacements, not parameters, so that a wrong small update cannot hide).
    """
    import torch

    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.standard_normal(shape) for i, shape in enumerate(shapes)}
    start = {k: p.copy() for k, p in params.items()}
    tensors = {k: torch.tensor(p, requires_grad=True) for k, p in params.items()}
    twin = torch_optimizer_like(optimizer, list(tensors.values()))
    worst = 0.0
    for _ in range(steps):
        grads = {k: rng.standard_normal(p.shape) for k, p in params.items()}
        optimizer.step(params, grads)
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        twin.step()
        for k, p in params.items():
            ref = tensors[k].detach().numpy() - start[k]
            mine = p - start[k]
            err = np.max(np.abs(mine - ref) / np.maximum(1e-8, np.abs(mine) + np.abs(ref)))
            worst = max(worst, float(err))
    return worst


def _check_lr0(lr0):
    if not (isinstance(lr0, (int, float)) and lr0 > 0):
        raise ValueError(f"the initial learning rate must be a number > 0, got {lr0!r}")


def step_schedule(lr0, step_size, gamma=0.1):
    """lr(t) = lr0 * gamma ** (t // step_size), as torch's StepLR (t counts steps from 0)."""
    _check_lr0(lr0)
    if step_size < 1 or not 0 < gamma <= 1:
        raise ValueError(f"need step_size >= 1 and 0 < gamma <= 1, got {step_size}, {gamma}")
    return lambda t: lr0 * gamma ** (t // step_size)


def exponential_schedule(lr0, gamma):
    """lr(t) = lr0 * gamma ** t, as torch's ExponentialLR."""
    _check_lr0(lr0)
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    return lambda t: lr0 * gamma ** t


def cosine_schedule(lr0, total_steps, lr_min=0.0):
    """lr(t) = lr_min + (lr0 - lr_min) (1 + cos(pi t / T)) / 2 for t <= T, then lr_min (torch's CosineAnnealingLR up to T)."""
    _check_lr0(lr0)
    if total_steps < 1 or not 0 <= lr_min <= lr0:
        raise ValueError(f"need total_steps >= 1 and 0 <= lr_min <= lr0, got {total_steps}, {lr_min}")
    return lambda t: lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))


def warmup_schedule(schedule, warmup_steps, start_factor=0.1):
    """Linear warm-up (Goyal et al., 2017) in front of ``schedule``.

    For t < warmup_steps: lr(t) = schedule(0) * (start_factor + (1 - start_factor) * t / warmup_steps)
    (torch's LinearLR); afterwards lr(t) = schedule(t - warmup_steps).
    """
    if warmup_steps < 0 or not 0 < start_factor <= 1:
        raise ValueError(f"need warmup_steps >= 0 and 0 < start_factor <= 1, got {warmup_steps}, {start_factor}")

    def lr(t):
        if t < warmup_steps:
            return schedule(0) * (start_factor + (1 - start_factor) * t / warmup_steps)
        return schedule(t - warmup_steps)
    return lr


def zeros_init(fan_in, fan_out, rng=None):
    """All-zero weights (fan_in, fan_out): every unit identical, and no gradient reaches earlier layers."""
    return np.zeros((fan_in, fan_out))


def constant_init(fan_in, fan_out, rng=None, value=0.01):
    """All weights equal to ``value``: non-zero signal, but the units of a layer stay identical."""
    return np.full((fan_in, fan_out), float(value))


def normal_init(fan_in, fan_out, rng, std=0.01):
    """N(0, std^2) weights, by default small."""
    return std * rng.standard_normal((fan_in, fan_out))


def xavier_normal_init(fan_in, fan_out, rng, gain=1.0):
    """Glorot & Bengio (2010): N(0, gain^2 * 2 / (fan_in + fan_out))."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal((fan_in, fan_out))


def xavier_uniform_init(fan_in, fan_out, rng, gain=1.0):
    """Glorot & Bengio (2010): U(-r, r) with r = gain * sqrt(6 / (fan_in + fan_out)), the same variance."""
    r = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, size=(fan_in, fan_out))


def he_normal_init(fan_in, fan_out, rng, gain=math.sqrt(2.0)):
    """He et al. (2015): N(0, gain^2 / fan_in), gain sqrt(2) for ReLU."""
    return gain / math.sqrt(fan_in) * rng.standard_normal((fan_in, fan_out))


def orthogonal_init(fan_in, fan_out, rng, gain=1.0):
    """Saxe et al. (2014): orthonormal columns (or rows, whichever are fewer), scaled by gain.

    QR of a Gaussian matrix, with the signs of R's diagonal moved into Q so that Q is uniformly
    distributed over the orthogonal matrices.
    """
    a = rng.standard_normal((max(fan_in, fan_out), min(fan_in, fan_out)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return gain * (q if fan_in >= fan_out else q.T)


#: name -> init function (fan_in, fan_out, rng, **kw) -> W of shape (fan_in, fan_out)
INITIALIZERS = {"zeros": zeros_init, "constant": constant_init, "normal": normal_init,
                "xavier": xavier_normal_init, "xavier_uniform": xavier_uniform_init,
                "he": he_normal_init, "orthogonal": orthogonal_init}


def init_weight(name, fan_in, fan_out, rng, **kw):
    """A (fan_in, fan_out) weight matrix from the initializer ``name`` (a key of INITIALIZERS)."""
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
