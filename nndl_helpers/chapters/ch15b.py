"""NumPy code taught in notebooks/15b_neural_machine_translation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import log_softmax


def label_smoothing_loss(z, y, smoothing=0.1):
    """Mean cross-entropy of integer labels against label-smoothed targets, and its gradient.

    Inputs:  z (N, C) logits; y (N,) integer labels in [0, C); smoothing = epsilon in [0, 1).
    The target of row n is q_n = (1 - epsilon) one_hot(y_n) + epsilon / C, as in torch's
    cross_entropy(label_smoothing=epsilon). Returns loss = -(1/N) sum_n sum_c q_nc log softmax(z_n)_c (float)
    and dz = (softmax(z) - q) / N. smoothing = 0 is chapter 3's softmax_cross_entropy.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    z, y = np.asarray(z), np.asarray(y)
    if z.ndim != 2 or y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"need logits z (N, C) and integer labels y (N,), got {z.shape} and {y.dtype} {y.shape}")
    N, C = z.shape
    if N and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"labels must lie in [0, {C}), got range [{y.min()}, {y.max()}]")
    q = np.full((N, C), smoothing / C)
    q[np.arange(N), y] += 1 - smoothing
    log_p = log_softmax(z)
    return float(-(q * log_p).sum() / N), (np.exp(log_p) - q) / N


import numpy as np

from nndl_helpers.chapters.ch03 import softmax


def filter_logits(logits, top_k=0, top_p=1.0):
    """Top-k then top-p (nucleus) filtering of one logits vector (V,): removed tokens get -inf.

    top_k = 0 keeps every token; top_p = 1 keeps every token; otherwise the smallest set of most probable
    tokens whose probability sums to at least top_p is kept (always at least the most probable token).
    """
    if int(top_k) < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no limit), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    z = np.array(logits, dtype=np.float64)
    if 0 < top_k < z.size:
        z[np.argsort(-z, kind="stable")[top_k:]] = -np.inf
    if top_p < 1:
        order = np.argsort(-z, kind="stable")
        p = softmax(z[order])
        before = np.cumsum(p) - p                       # probability of the tokens ranked above
        z[order[before >= top_p]] = -np.inf
    return z
