"""NumPy code taught in notebooks/10b_multitask_and_meta_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch04a import affine_backward, affine_forward, init_mlp_params, relu_backward, relu_forward


def masked_cross_entropy_loss(z, y):
    """Chapter 3's softmax cross-entropy over the rows with a label (y >= 0); y = -1 marks a missing label.

    Returns the mean loss over the labelled rows (0.0 if there are none) and dz (N, C), zero on unlabelled rows."""
    z, y = np.asarray(z), np.asarray(y)
    if z.ndim != 2 or y.shape != (len(z),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected logits z (N, C) and integer labels y (N,) with -1 for missing, got {z.shape}, "
                         f"{y.dtype} {y.shape}")
    labelled = y >= 0
    dz = np.zeros_like(z)
    if not labelled.any():
        return 0.0, dz
    loss, dz[labelled] = softmax_cross_entropy(z[labelled], y[labelled])
    return loss, dz


class TwoHeadMLP:
    """Hard parameter sharing: a ReLU trunk x -> h = relu(x W1 + b1) and two softmax heads, z_a = h Wa + ba
    (task a, n_a classes) and z_b = h Wb + bb (task b, n_b classes). Loss L_a + weight_b L_b, each a masked
    cross-entropy (label -1: missing). forward(X) -> ((z_a, z_b), cache); backward(dz_a, dz_b, cache) -> grads."""

    def __init__(self, n_in, n_hidden, n_a, n_b, *, weight_b=1.0, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        trunk = init_mlp_params([n_in, n_hidden], rng, dtype=dtype)                  # He, for the ReLU
        head_a = init_mlp_params([n_hidden, n_a], rng, weight_init="xavier", dtype=dtype)
        head_b = init_mlp_params([n_hidden, n_b], rng, weight_init="xavier", dtype=dtype)
        self.params = {"W1": trunk["W1"], "b1": trunk["b1"], "Wa": head_a["W1"], "ba": head_a["b1"],
                       "Wb": head_b["W1"], "bb": head_b["b1"]}
        self.weight_b, self.dtype = float(weight_b), np.dtype(dtype)

    def forward(self, X):
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.params["W1"].shape[0]:
            raise ValueError(f"TwoHeadMLP expects X of shape (N, {self.params['W1'].shape[0]}), got {X.shape}")
        z1, trunk_cache = affine_forward(X, self.params["W1"], self.params["b1"])
        h, relu_cache = relu_forward(z1)
        z_a, head_a_cache = affine_forward(h, self.params["Wa"], self.params["ba"])
        z_b, head_b_cache = affine_forward(h, self.params["Wb"], self.params["bb"])
        return (z_a, z_b), (trunk_cache, relu_cache, head_a_cache, head_b_cache)

    def backward(self, dz_a, dz_b, cache):
        trunk_cache, relu_cache, head_a_cache, head_b_cache = cache
        dh_a, dWa, dba = affine_backward(dz_a, head_a_cache)
        dh_b, dWb, dbb = affine_backward(dz_b, head_b_cache)
        dz1 = relu_backward(dh_a + dh_b, relu_cache)             # the two heads' error signals add at h
        dx, dW1, db1 = affine_backward(dz1, trunk_cache)
        return {"W1": dW1, "b1": db1, "Wa": dWa, "ba": dba, "Wb": dWb, "bb": dbb, "x": dx}

    def loss(self, X, y_a, y_b):
        (z_a, z_b), cache = self.forward(X)
        loss_a, dz_a = masked_cross_entropy_loss(z_a, y_a)
        loss_b, dz_b = masked_cross_entropy_loss(z_b, y_b)
        grads = self.backward(dz_a, self.weight_b * dz_b, cache)
        del grads["x"]
        return loss_a + self.weight_b * loss_b, grads

    def __call__(self, X):
        return self.forward(X)[0]


def soft_sharing_penalty(params_a, params_b, strength, keys=("W1", "b1")):
    """Soft parameter sharing: (strength / 2) sum_k ||params_a[k] - params_b[k]||^2 over the tied arrays keys.

    Returns (penalty, grads_a, grads_b): grads_a[k] = strength (a_k - b_k) = -grads_b[k], for the keys only."""
    if strength < 0:
        raise ValueError(f"the soft-sharing strength must be >= 0, got {strength}")
    penalty, grads_a, grads_b = 0.0, {}, {}
    for k in keys:
        if np.shape(params_a[k]) != np.shape(params_b[k]):
            raise ValueError(f"soft_sharing_penalty: {k} has shape {np.shape(params_a[k])} in the first network "
                             f"and {np.shape(params_b[k])} in the second; tied arrays must have the same shape")
        diff = params_a[k] - params_b[k]
        penalty += 0.5 * strength * float(np.sum(diff * diff))
        grads_a[k], grads_b[k] = strength * diff, -strength * diff
    return penalty, grads_a, grads_b


from nndl_helpers.chapters.ch04a import mlp_backward, mlp_forward


def sample_sine_tasks(n_tasks, n_points, rng, *, amplitude=(0.1, 5.0), phase=(0.0, np.pi), x_range=(-5.0, 5.0)):
    """n_tasks sine-wave regression tasks y = A sin(x - phi) (Finn et al., 2017), n_points (x, y) pairs each.

    Returns x, y of shape (n_tasks, n_points, 1) and the tasks' (A, phi), each (n_tasks,)."""
    if n_tasks < 1 or n_points < 1:
        raise ValueError(f"need n_tasks >= 1 and n_points >= 1, got {n_tasks} and {n_points}")
    A, phi = rng.uniform(*amplitude, n_tasks), rng.uniform(*phase, n_tasks)
    x = rng.uniform(*x_range, (n_tasks, n_points, 1))
    return x, A[:, None, None] * np.sin(x - phi[:, None, None]), (A, phi)


def task_affine_forward(x, W, b):
    """Chapter 4's affine layer with a leading task axis: out[t] = x[t] W[t] + b[t].

    Inputs: x (T, N, D), W (T, D, M), b (T, M). Returns out (T, N, M) and the cache."""
    if np.ndim(x) != 3 or np.ndim(W) != 3 or np.ndim(b) != 2 or not (
            x.shape[0] == W.shape[0] == b.shape[0] and x.shape[2] == W.shape[1] and W.shape[2] == b.shape[1]):
        raise ValueError(f"task_affine_forward expects x (T, N, D), W (T, D, M), b (T, M); got "
                         f"{np.shape(x)}, {np.shape(W)}, {np.shape(b)}")
    return x @ W + b[:, None, :], (x, W)


def task_affine_backward(dout, cache):
    """dx (T, N, D) = dout W^T, dW (T, D, M) = x^T dout, db (T, M): every task's own gradients."""
    x, W = cache
    return dout @ W.transpose(0, 2, 1), x.transpose(0, 2, 1) @ dout, dout.sum(axis=1)


def task_mlp_forward(x, params, *, activation="relu"):
    """An MLP per task: params W1 (T, D, M1), b1 (T, M1), ..., on x (T, N, D). -> (out, cache).

    Chapter 4's mlp_forward with the task-batched affine layer in place of its own."""
    return mlp_forward(x, params, activation=activation, affine=(task_affine_forward, task_affine_backward))


def task_mlp_backward(dout, cache):
    """Backpropagation per task from dout (T, N, M_L): grads keyed like params (each with its task axis), + "x".

    Chapter 4's mlp_backward: the cache holds the task-batched affine layer's backward."""
    return mlp_backward(dout, cache)


def task_mse_loss(pred, y):
    """Each task's mean squared error, summed over the tasks: sum_t (1/N) sum_n (pred[t,n] - y[t,n])^2.

    pred, y (T, N, 1). Returns (loss, dpred). The tasks do not share parameters, so the gradient of the sum with
    respect to task t's parameters is the gradient of task t's own loss; divide by T for the mean."""
    if np.shape(pred) != np.shape(y) or np.ndim(pred) != 3:
        raise ValueError(f"task_mse_loss expects pred and y of the same shape (T, N, K), got {np.shape(pred)}, {np.shape(y)}")
    diff = pred - y
    return float(np.sum(diff * diff) / pred.shape[1]), (2 / pred.shape[1]) * diff


def maml_adapt(params, x, y, *, inner_lr, steps=1):
    """Adapt the shared params (W1 (D, M1), b1, ...) to each task of (x, y) (T, K, 1) with `steps` gradient steps of
    size inner_lr on its MSE. Returns the adapted params, each array with a leading task axis (T, ...)."""
    if steps < 0 or inner_lr < 0:
        raise ValueError(f"need steps >= 0 and inner_lr >= 0, got steps={steps}, inner_lr={inner_lr}")
    adapted = {k: np.broadcast_to(v, (len(x), *v.shape)) for k, v in params.items()}
    for _ in range(steps):
        pred, cache = task_mlp_forward(x, adapted)
        grads = task_mlp_backward(task_mse_loss(pred, y)[1], cache)
        adapted = {k: v - inner_lr * grads[k] for k, v in adapted.items()}
    return adapted


def fomaml_meta_gradient(params, x_support, y_support, x_query, y_query, *, inner_lr, steps=1):
    """First-order MAML: (mean query loss after adaptation, meta-gradient keyed like params), the meta-gradient
    being the mean over the tasks of the query loss's gradient at the adapted params (the Hessian term dropped)."""
    adapted = maml_adapt(params, x_support, y_support, inner_lr=inner_lr, steps=steps)
    pred, cache = task_mlp_forward(x_query, adapted)
    loss, dpred = task_mse_loss(pred, y_query)
    grads = task_mlp_backward(dpred / len(x_query), cache)
    return loss / len(x_query), {k: grads[k].sum(axis=0) for k in params}
