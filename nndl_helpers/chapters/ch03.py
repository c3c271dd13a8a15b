"""NumPy code taught in notebooks/03_linear_models.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def linear_forward(X, W, b):
    """Scores of a linear model, z = X W + b.

    Inputs:  X (N, D) samples as rows; W (D, C) one weight column per output, or (D,) for a
             single score; b (C,) or a scalar.
    Returns: z (N, C), or (N,) when W is (D,); cache for ``linear_backward``.
    """
    if np.ndim(X) != 2 or np.ndim(W) not in (1, 2) or np.shape(X)[1] != np.shape(W)[0]:
        raise ValueError(f"linear_forward: X {np.shape(X)} and W {np.shape(W)} do not fit: "
                         "expected X (N, D) and W (D, C) or (D,)")
    if np.shape(b) not in ((), np.shape(W)[1:]):
        raise ValueError(f"linear_forward: b has shape {np.shape(b)}, expected () or {np.shape(W)[1:]}")
    z = X @ W + b
    return z, (X, W, np.shape(b))


def linear_backward(dz, cache):
    """Gradients of a loss through z = X W + b, given dz = dL/dz (same shape as z).

    Returns: dX (N, D) = dz W^T;  dW (like W) = X^T dz;  db (like b) = sum of dz over samples.
    """
    X, W, b_shape = cache
    if np.shape(dz) != (len(X),) + W.shape[1:]:
        raise ValueError(f"linear_backward: dz has shape {np.shape(dz)}, but z has shape {(len(X),) + W.shape[1:]}")
    dX = np.outer(dz, W) if W.ndim == 1 else dz @ W.T
    dW = X.T @ dz
    db = dz.sum(axis=0).reshape(b_shape)
    return dX, dW, db


def sigmoid(z):
    """Logistic function sigma(z) = 1 / (1 + exp(-z)), elementwise, without overflow.

    Only exp(-|z|) <= 1 is ever computed; the two branches are the same formula rearranged.
    """
    z = np.asarray(z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(z):
    """log(1 + exp(z)) elementwise, computed as max(z, 0) + log1p(exp(-|z|)) so it never overflows."""
    z = np.asarray(z)
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def binary_cross_entropy_with_logits(z, y):
    """Mean binary cross-entropy of labels y under p = sigmoid(z), computed from the logits z.

    Inputs:  z logits, shape (N,) or (N, K) (K independent binary tasks); y the same shape,
             values in [0, 1] (usually 0 or 1).
    Returns: loss  = mean over all entries of softplus(z) - y z   (float);
             dz    = (sigmoid(z) - y) / z.size, the gradient of that mean (shape of z).
    """
    z, y = _scores_and_labels(z, y, "logits")
    loss = np.mean(softplus(z) - y * z)
    dz = (sigmoid(z) - y) / z.size
    return float(loss), dz


def _scores_and_labels(z, y, what="scores"):
    """z as a float array and y as an array of z's shape and dtype; a ValueError naming both shapes otherwise."""
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    y = np.asarray(y, dtype=z.dtype)
    if y.shape != z.shape:
        raise ValueError(f"labels y {y.shape} must have the shape of the {what} z {z.shape}")
    return z, y


def softmax(z):
    """Row-wise softmax of logits z (N, C), or of one vector (C,).

    Subtracting the row maximum leaves the result unchanged and keeps exp from overflowing.
    """
    z = np.asarray(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    """Row-wise log(softmax(z)) by log-sum-exp: (z - m) - log(sum(exp(z - m))), m the row max."""
    z = np.asarray(z)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_hot(y, num_classes=None, dtype=np.float64):
    """Integer labels y (N,) -> one-hot rows (N, num_classes)."""
    y = np.asarray(y)
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    out = np.zeros((len(y), num_classes), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out


def softmax_cross_entropy(z, y):
    """Mean cross-entropy of integer labels under softmax(z), and its gradient.

    Inputs:  z (N, C) logits; y (N,) integer labels in [0, C).
    Returns: loss = -(1/N) sum_n log softmax(z_n)[y_n]   (float);
             dz   = (softmax(z) - one_hot(y)) / N        (N, C), the gradient of loss w.r.t. z.
    """
    z = np.asarray(z)
    y = np.asarray(y)
    if z.ndim != 2:
        raise ValueError(f"logits z must be (N, C), got shape {z.shape}")
    N, C = z.shape
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels y must be integers of shape ({N},), got {y.dtype} {y.shape}")
    if N and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"labels must lie in [0, {C}), got range [{y.min()}, {y.max()}]")
    log_p = log_softmax(z)
    rows = np.arange(N)
    loss = -log_p[rows, y].mean()
    dz = np.exp(log_p)
    dz[rows, y] -= 1
    dz /= N
    return float(loss), dz


def perceptron_loss(z, y):
    """Mean perceptron loss max(0, -y z) for labels y in {-1, +1}, and a subgradient.

    Inputs:  z scores, any shape; y the same shape, values -1 or +1.
    Returns: loss (float); dz = -y / z.size where y z <= 0, else 0. At the kink y z = 0 the
             subgradient -y is chosen, so that a zero-initialised model does move (the perceptron rule).
    """
    z, y = _scores_and_signed_labels(z, y)
    margin = y * z
    loss = np.mean(np.maximum(0.0, -margin))
    dz = np.where(margin <= 0, -y, 0.0) / z.size
    return float(loss), dz


def hinge_loss(z, y):
    """Mean hinge loss max(0, 1 - y z) for labels y in {-1, +1}, and a subgradient.

    Inputs:  z scores, any shape; y the same shape, values -1 or +1.
    Returns: loss (float); dz = -y / z.size where y z < 1, else 0 (0 chosen at the kink y z = 1).
    """
    z, y = _scores_and_signed_labels(z, y)
    margin = y * z
    loss = np.mean(np.maximum(0.0, 1.0 - margin))
    dz = np.where(margin < 1, -y, 0.0) / z.size
    return float(loss), dz


def _scores_and_signed_labels(z, y):
    z, y = _scores_and_labels(z, y)
    if not np.all(np.abs(y) == 1):
        raise ValueError("labels must be -1 or +1 (convert 0/1 labels with 2 * y - 1)")
    return z, y


def perceptron_fit(X, y, epochs=100, rng=None, max_steps=None):
    """The perceptron (NNDL Algorithm 3.1), one sample at a time, plus its averaged version.

    On a mistake, y_n (w^T x_n + b) <= 0, it sets  w <- w + y_n x_n  and  b <- b + y_n.
    Inputs:  X (N, D); y (N,) labels -1 or +1; epochs: passes over the data, each in a fresh random
             order; rng: np.random.Generator for those orders; max_steps: stop after that many samples.
    Stops after the first epoch without a mistake (the data are then separated).
    Returns a dict: w (D,), b: the last weights; w_avg, b_avg: their average over all steps
    (the averaged perceptron); mistakes: mistakes per epoch; steps: samples visited;
    snapshots: (w, b, w_avg, b_avg) at the end of each epoch.
    """
    X = np.asarray(X, dtype=np.float64)
    _, y = _scores_and_signed_labels(np.zeros(len(X)), y)
    rng = np.random.default_rng(0) if rng is None else rng
    N, D = X.shape
    w, b = np.zeros(D), 0.0
    w_sum, b_sum = np.zeros(D), 0.0
    mistakes, snapshots, steps = [], [], 0
    for _ in range(epochs):
        wrong = 0
        for n in rng.permutation(N):
            if y[n] * (X[n] @ w + b) <= 0:
                w = w + y[n] * X[n]
                b += y[n]
                wrong += 1
            w_sum += w
            b_sum += b
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        mistakes.append(wrong)
        snapshots.append((w.copy(), b, w_sum / steps, b_sum / steps))
        if wrong == 0 or (max_steps is not None and steps >= max_steps):
            break
    return {"w": w, "b": b, "w_avg": w_sum / steps, "b_avg": b_sum / steps,
            "mistakes": mistakes, "steps": steps, "snapshots": snapshots}


def accuracy(scores, y):
    """Share of correct predictions; scores (N, C) are turned into labels by argmax, (N,) used as labels."""
    scores, y = np.asarray(scores), np.asarray(y)
    if scores.ndim not in (1, 2) or len(scores) != len(y) or y.ndim != 1:
        raise ValueError(f"accuracy: expected scores (N, C) or labels (N,) and y (N,), "
                         f"got {scores.shape} and {y.shape}")
    pred = scores.argmax(axis=1) if scores.ndim == 2 else scores
    return float(np.mean(pred == y))


def confusion_matrix(y_true, y_pred, num_classes):
    """counts[i, j] = number of samples of true class i predicted as class j."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"confusion_matrix: y_true {y_true.shape} and y_pred {y_pred.shape} must both be (N,)")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"confusion_matrix: labels must lie in [0, {num_classes})")
    return np.bincount(num_classes * y_true + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)
