"""NumPy code taught in notebooks/07a_optimization.ipynb, reused by later notebooks.

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


def _check_beta(name, value):
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


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


#: name -> class; ``make_optimizer`` and the sliders pick optimizers from here.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adadelta": AdaDelta, "adam": Adam, "adamw": AdamW}


def make_optimizer(name, **hyper):
    """An optimizer by name (a key of OPTIMIZERS, any case), e.g. make_optimizer("adam", lr=1e-3)."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[key](**hyper)


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
