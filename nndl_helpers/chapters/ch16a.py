"""NumPy code taught in notebooks/16a_understanding_and_adversarial.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch05a import check_images


def lenet5_loss_input_gradient(model, X, y):
    """The mean softmax cross-entropy of a LeNet5 on images X (N, 1, 28, 28), labels y (N,), and dL/dX."""
    scores, cache = model.forward(X)
    loss, dscores = softmax_cross_entropy(scores, y)
    return loss, model.backward(dscores, cache, need_dx=True)["x"]


def lenet5_saliency(model, X, classes):
    """Saliency maps |d s_c / d X| (N, 28, 28) of a LeNet5, one class c per image (classes: (N,) ints)."""
    scores, cache = model.forward(X)
    classes = np.asarray(classes)
    if classes.shape != (len(X),) or classes.dtype.kind not in "iu" or classes.min() < 0 or classes.max() > 9:
        raise ValueError(f"lenet5_saliency: classes must be ({len(X)},) integers in 0..9, got {classes!r}")
    dscores = np.zeros_like(scores)
    dscores[np.arange(len(X)), classes] = 1.0          # the gradient of s_c alone, not of a loss
    return np.abs(model.backward(dscores, cache, need_dx=True)["x"])[:, 0]


def check_epsilon(epsilon, name="epsilon"):
    """epsilon as a float, or a ValueError: an attack budget is a finite number >= 0 (pixels lie in [0, 1])."""
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {epsilon!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (an L-infinity budget on pixels in [0, 1]), got {epsilon!r}")
    return value


def pgd(x, y, epsilon, input_gradient, *, step_size=None, steps=10, rng=None):
    """Projected gradient ascent of a loss in the L-infinity ball of radius epsilon around images x, in [0, 1].

    x (N, C, H, W) floats in [0, 1]; y (N,) labels; input_gradient(x, y) -> dL/dx, the attacked model's gradient.
    step_size defaults to epsilon / 4; rng (a np.random.Generator) starts at a uniform random point of the ball,
    None at x itself. Returns x_adv, x's shape and dtype, with |x_adv - x| <= epsilon and 0 <= x_adv <= 1.
    """
    check_images(x, "pgd: x", value_range=(0, 1))
    eps = check_epsilon(epsilon)
    step = eps / 4 if step_size is None else check_epsilon(step_size, "step_size")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"pgd: steps must be an integer >= 1, got {steps!r}")
    lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)          # the allowed box, ball and [0, 1] together
    x_adv = x.copy() if rng is None else np.clip(x + rng.uniform(-eps, eps, x.shape), lo, hi).astype(x.dtype)
    for _ in range(int(steps)):
        x_adv = np.clip(x_adv + step * np.sign(input_gradient(x_adv, y)), lo, hi).astype(x.dtype)
    return x_adv


def fgsm(x, y, epsilon, input_gradient):
    """The fast gradient sign method: clip(x + epsilon sign(dL/dx), 0, 1), one PGD step of size epsilon from x."""
    return pgd(x, y, epsilon, input_gradient, step_size=epsilon, steps=1)
