"""NumPy code taught in notebooks/02_linear_regression.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def least_squares(X, y):
    """Ordinary least squares (最小二乘法), NNDL §2.3.1.1: argmin over w, b of ||X w + b - y||².

    X: (N, D) inputs, one sample per row; y: (N,) targets, or (N, K) for K problems at once.
    Returns w: (D,) or (D, K), and b: a float or (K,).
    Uses np.linalg.lstsq (SVD) on [X, 1] instead of the normal equations: it never forms
    XᵀX, whose condition number is the square of X's, and it also works when XᵀX is singular
    (then it returns the minimum-norm solution).
    """
    X_hat = np.column_stack([X, np.ones(len(X))])
    w_hat, *_ = np.linalg.lstsq(X_hat, y, rcond=None)
    return w_hat[:-1], w_hat[-1]


def linear_regression_loss(X, y, w, b):
    """Mean squared error (均方误差) of the linear model y_hat = X w + b, and its gradients.

    The model's objective, a function of its parameters w and b (chapter 4's linear_regression_loss(pred, y)
    is the same error as a function of the prediction).
    X: (N, D) inputs; y: (N,) targets; w: (D,) weights; b: scalar bias.
    Returns (loss, dw, db): loss = mean((X w + b - y)²) as a float,
    dw = dloss/dw of shape (D,), db = dloss/db as a float.
    No factor 1/2, like torch.nn.MSELoss, so the gradients are (2/N) Xᵀr and (2/N) Σ r.
    """
    if np.ndim(X) != 2 or np.shape(y) != (len(X),) or np.shape(w) != (np.shape(X)[1],):
        raise ValueError(f"linear_regression_loss: expected X (N, D), y (N,), w (D,); "
                         f"got X {np.shape(X)}, y {np.shape(y)}, w {np.shape(w)}")
    n = len(y)
    residual = X @ w + b - y                 # r = y_hat - y, shape (N,)
    loss = residual @ residual / n
    dw = (2.0 / n) * (X.T @ residual)        # (D,)
    db = (2.0 / n) * residual.sum()
    return float(loss), dw, float(db)


def minibatch_sgd(loss_fn, params, X, y, *, lr, batch_size, epochs, rng=None, on_step=None):
    """Mini-batch stochastic gradient descent (小批量梯度下降法), NNDL §2.2.3.

    loss_fn(X_batch, y_batch, *params) -> (loss, *grads), one gradient per parameter.
    params: the initial parameters (arrays or floats); they are not modified.
    batch_size=len(X) is (full-batch) gradient descent, batch_size=1 is plain SGD.
    Every epoch visits all samples once, in an order drawn from rng
    (np.random.Generator; default: a fresh one seeded with 0, so runs repeat exactly).
    on_step(params), if given, is called after every update, e.g. to record a trajectory.
    Returns (params, losses): the final parameters and the mini-batch loss of every update.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    params = list(params)
    losses = []
    n = len(X)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            loss, *grads = loss_fn(X[batch], y[batch], *params)
            params = [p - lr * g for p, g in zip(params, grads)]
            losses.append(loss)
            if on_step is not None:
                on_step(params)
    return params, losses


def standardize(X, mean=None, std=None):
    """Standardisation (标准化): (X - mean) / std per column, to zero mean and unit variance.

    X: (N, D). mean, std: (D,), default the statistics of X itself. Fit them on the training
    set and pass them back in for the test set, so both are transformed the same way.
    Constant columns (std 0) are only centred. Returns (X_standardized, mean, std).
    """
    mean = X.mean(axis=0) if mean is None else mean
    if std is None:
        std = X.std(axis=0)
        std = np.where(std > 0, std, 1.0)
    return (X - mean) / std, mean, std


def polynomial_features(x, degree):
    """Polynomial features [x, x², ..., x^degree] of a 1-D input (no constant column: the bias is separate).

    x: (N,) or (N, 1). Returns (N, degree); degree 0 gives an (N, 0) array (a constant model).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return x[:, None] ** np.arange(1, degree + 1)


def ridge_regression_loss(X, y, w, b, lam):
    """Ridge objective (岭回归) mean((X w + b - y)²) + lam ||w||² and its gradients; b is not penalised.

    X: (N, D), y: (N,), w: (D,), b: scalar, lam >= 0.
    Returns (loss, dw, db) with dw: (D,) and db a float.
    """
    loss, dw, db = linear_regression_loss(X, y, w, b)
    return loss + lam * float(w @ w), dw + 2.0 * lam * w, db


def ridge_closed_form(X, y, lam):
    """Ridge regression in closed form, NNDL §2.3.1.2: argmin mean((X w + b - y)²) + lam ||w||².

    X: (N, D); y: (N,), or (N, K) to fit K target vectors at once; lam >= 0.
    Returns w: (D,) or (D, K) and b: a float or (K,).
    Centres X and y (so b drops out), then solves (X_cᵀX_c + N·lam·I) w = X_cᵀ y_c with an LU
    factorisation; lam = 0 falls back to least squares via lstsq, since X_cᵀX_c may be singular.
    """
    if lam < 0:
        raise ValueError(f"the ridge penalty lam must be >= 0, got {lam}")
    x_mean, y_mean = X.mean(axis=0), y.mean(axis=0)
    X_c, y_c = X - x_mean, y - y_mean
    if lam == 0:
        w, *_ = np.linalg.lstsq(X_c, y_c, rcond=None)
    else:
        n, d = X.shape
        w = np.linalg.solve(X_c.T @ X_c + n * lam * np.eye(d), X_c.T @ y_c)
    return w, y_mean - x_mean @ w


def fit_polynomial_ridge(x, y, degree, lam):
    """Fit a degree-`degree` polynomial in the 1-D input x by ridge regression; return predict(x_new).

    The features [x, ..., x^degree] are standardised with the training set's statistics, so the
    penalty lam treats every power alike. y may be (N,) or (N, K) (K fits sharing the inputs).
    """
    features, mean, std = standardize(polynomial_features(x, degree))
    w, b = ridge_closed_form(features, y, lam)

    def predict(x_new):
        return standardize(polynomial_features(x_new, degree), mean, std)[0] @ w + b

    return predict
