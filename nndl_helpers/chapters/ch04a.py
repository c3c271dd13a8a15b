"""NumPy code taught in notebooks/04a_feedforward_networks.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import (binary_cross_entropy_with_logits, linear_backward, linear_forward, sigmoid,
                               softmax, softmax_cross_entropy)


def relu_forward(z):
    """ReLU a = max(0, z), element-wise. Returns a (same shape as z) and cache = z."""
    return np.maximum(z, 0), z


def relu_backward(da, cache):
    """dz = da * 1[z > 0]. The derivative at exactly 0 is taken to be 0, as PyTorch does."""
    z = cache
    return da * (z > 0)


def leaky_relu_forward(z, negative_slope=0.01):
    """Leaky ReLU: z for z > 0, negative_slope * z otherwise. Returns a and cache."""
    return np.where(z > 0, z, negative_slope * z), (z, negative_slope)


def leaky_relu_backward(da, cache):
    z, negative_slope = cache
    return da * np.where(z > 0, 1.0, negative_slope).astype(da.dtype)


def elu_forward(z, alpha=1.0):
    """ELU: z for z > 0, alpha * (exp(z) - 1) otherwise. Returns a and cache."""
    a = np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))  # min(): no overflow warning for big z
    return a, (z, a, alpha)


def elu_backward(da, cache):
    z, a, alpha = cache
    return da * np.where(z > 0, 1.0, a + alpha)  # for z <= 0: alpha * exp(z) = a + alpha


def sigmoid_forward(z):
    """Logistic function a = 1 / (1 + exp(-z)). Returns a and cache = a."""
    a = sigmoid(z)
    return a, a


def sigmoid_backward(da, cache):
    a = cache
    return da * a * (1 - a)


def tanh_forward(z):
    """a = tanh(z). Returns a and cache = a."""
    a = np.tanh(z)
    return a, a


def tanh_backward(da, cache):
    a = cache
    return da * (1 - a * a)


def softplus_forward(z):
    """Softplus a = log(1 + exp(z)), a smooth ReLU. Returns a and cache = z."""
    return np.logaddexp(0, z), z  # logaddexp never overflows


def softplus_backward(da, cache):
    z = cache
    return da * sigmoid(z)


def silu_forward(z):
    """SiLU / Swish with beta = 1: a = z * sigmoid(z). Returns a and cache = (z, sigmoid(z))."""
    s = sigmoid(z)
    return z * s, (z, s)


def silu_backward(da, cache):
    z, s = cache
    return da * s * (1 + z * (1 - s))


_GELU_C = float(np.sqrt(2 / np.pi))  # a Python float, so float32 inputs stay float32


def gelu_forward(z):
    """GELU, tanh approximation: a = z/2 * (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))."""
    t = np.tanh(_GELU_C * (z + 0.044715 * z**3))
    return 0.5 * z * (1 + t), (z, t)


def gelu_backward(da, cache):
    z, t = cache
    du_dz = _GELU_C * (1 + 3 * 0.044715 * z**2)
    return da * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du_dz)


def identity_forward(z):
    """The identity f(z) = z: a network with it collapses to a linear model (see XOR)."""
    return z, None


def identity_backward(da, cache):
    return da


#: name -> (forward, backward); the MLP and the playground pick activations from here.
ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "elu": (elu_forward, elu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "softplus": (softplus_forward, softplus_backward),
    "silu": (silu_forward, silu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "identity": (identity_forward, identity_backward),
}


def maxout_forward(z, pieces):
    """Maxout over consecutive groups: z (N, M * pieces) -> a (N, M), a[n, m] = max_k z[n, m * pieces + k]."""
    n, width = z.shape
    if width % pieces:
        raise ValueError(f"maxout_forward: z has shape {z.shape}; its {width} columns "
                         f"do not split into groups of {pieces}")
    groups = z.reshape(n, width // pieces, pieces)
    winner = groups.argmax(axis=2)
    return np.take_along_axis(groups, winner[..., None], axis=2)[..., 0], (winner, z.shape, pieces)


def maxout_backward(da, cache):
    """da (N, M) -> dz (N, M * pieces): each group's gradient goes to its winning piece."""
    winner, shape, pieces = cache
    dz = np.zeros((shape[0], shape[1] // pieces, pieces), dtype=da.dtype)
    np.put_along_axis(dz, winner[..., None], da[..., None], axis=2)
    return dz.reshape(shape)


def affine_forward(x, W, b):
    """Affine (fully connected) layer: out = x W + b.

    Inputs:  x (N, D), one sample per row; W (D, M); b (M,).
    Returns: out (N, M) and a cache for affine_backward.
    Raises ValueError, naming the shapes, when they do not fit together.
    """
    if np.ndim(W) != 2:
        raise ValueError(f"affine_forward: W must be 2-D (D, M), got shape {np.shape(W)}")
    if np.ndim(x) != 2:
        raise ValueError(f"affine_forward: x must be 2-D (N, D), got shape {np.shape(x)}")
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"affine_forward: x has shape {x.shape} ({x.shape[1]} features) "
                         f"but W has shape {W.shape} and expects {W.shape[0]} features")
    if np.shape(b) != (W.shape[1],):
        raise ValueError(f"affine_forward: b has shape {np.shape(b)}, but W has shape {W.shape}, "
                         f"so b must have shape ({W.shape[1]},)")
    return linear_forward(x, W, b)  # chapter 3's z = X W + b


def affine_backward(dout, cache):
    """Backward pass of the affine layer.

    Inputs:  dout (N, M), the upstream gradient dL/dout; cache from affine_forward.
    Returns: dx (N, D) = dout W^T, dW (D, M) = x^T dout, db (M,) = dout summed over the rows.
    """
    x, W = cache[0], cache[1]
    if np.shape(dout) != (x.shape[0], W.shape[1]):
        raise ValueError(f"affine_backward: dout has shape {np.shape(dout)}, but the layer's output "
                         f"has shape {(x.shape[0], W.shape[1])}")
    return linear_backward(dout, cache)  # chapter 3's backward of z = X W + b


def _regression_target(pred, y, name):
    """y as an array of pred's shape and dtype; (N,) targets are accepted for a single output."""
    y = np.asarray(y, dtype=pred.dtype)
    if y.ndim == 1 and pred.ndim == 2 and pred.shape[1] == 1:
        y = y[:, None]
    if y.shape != pred.shape:
        raise ValueError(f"{name}: pred has shape {pred.shape} but y has shape {y.shape}")
    return y


def mse_loss(pred, y):
    """Mean squared error 1/N sum_n ||pred_n - y_n||^2: averaged over the samples, summed over the outputs.

    This is torch's MSELoss(reduction="sum") / N (its default reduction="mean" also divides by K).
    Inputs:  pred (N, K); y (N, K), or (N,) when K == 1.
    Returns: loss (float) and dpred (N, K) = 2 (pred - y) / N.
    """
    diff = pred - _regression_target(pred, y, "mse_loss")
    n = pred.shape[0]
    return float(np.sum(diff * diff) / n), (2 / n) * diff


def half_mse_loss(pred, y):
    """NNDL's squared error 1/(2N) sum_n ||pred_n - y_n||^2: the book's (1/2)||y - y_hat||^2 averaged over the batch.

    Half of mse_loss; the 1/2 cancels the 2 of the derivative.
    Inputs:  pred (N, K); y (N, K), or (N,) when K == 1.
    Returns: loss (float) and dpred (N, K) = (pred - y) / N.
    """
    diff = pred - _regression_target(pred, y, "half_mse_loss")
    n = pred.shape[0]
    return float(0.5 * np.sum(diff * diff) / n), diff / n


def mlp_forward(x, params, *, activation="relu", affine=(affine_forward, affine_backward)):
    """Forward pass of [affine -> activation] * (L - 1) -> affine, for params W1, b1, ..., WL, bL.

    Returns the last layer's net input z^(L) (N, M_L), which has no activation of its own, and the
    cache for mlp_backward (the activation and the affine layer's backward are stored in it).
    affine  the (forward, backward) pair of the layer: this chapter's by default (10b passes a batched one).
    """
    act_forward, (affine_forward_fn, affine_backward_fn) = ACTIVATIONS[activation][0], affine
    num_layers = len(params) // 2
    a, caches = x, []
    for l in range(1, num_layers + 1):
        z, affine_cache = affine_forward_fn(a, params[f"W{l}"], params[f"b{l}"])
        act_cache = None
        if l < num_layers:
            a, act_cache = act_forward(z)
        caches.append((affine_cache, act_cache))
    return z, (caches, activation, affine_backward_fn)


def mlp_backward(dout, cache):
    """Backpropagation from dout = dL/dz^(L) (N, M_L), the error term delta^(L) of (BP1).

    Returns grads, a dict keyed like params, plus grads["x"] = dL/dx (N, D) for a caller that
    backpropagates further (a GAN's generator feeds a discriminator).
    """
    caches, activation, affine_backward_fn = cache
    act_backward = ACTIVATIONS[activation][1]
    grads, dz = {}, dout
    for l in range(len(caches), 0, -1):
        affine_cache, act_cache = caches[l - 1]
        if l < len(caches):
            dz = act_backward(da, act_cache)                                   # BP2, second half
        da, grads[f"W{l}"], grads[f"b{l}"] = affine_backward_fn(dz, affine_cache)  # BP3, BP4, BP2 first half
    grads["x"] = da
    return grads


from nndl_helpers.chapters.ch07b import he_normal_init, normal_init, xavier_normal_init

OUTPUTS = ("softmax", "sigmoid", "linear")
_RELU_FAMILY = ("relu", "leaky_relu", "elu", "softplus", "silu", "gelu")


def init_mlp_params(layer_sizes, rng, *, weight_init="he", activation="relu", dtype=np.float64):
    """Initial params W1, b1, ..., WL, bL of an MLP: W_l (M_{l-1}, M_l) from chapter 7's initializers, b_l = 0.

    weight_init  "he": he_normal_init, N(0, 2 / M_in); "xavier": xavier_normal_init, N(0, 2 / (M_in + M_out));
                 "auto": He for the ReLU family, Xavier for sigmoid, tanh and identity; a number: N(0, number^2).
    """
    if weight_init == "auto":
        weight_init = "he" if activation in _RELU_FAMILY else "xavier"
    if weight_init == "he":
        init = he_normal_init
    elif weight_init == "xavier":
        init = xavier_normal_init
    elif isinstance(weight_init, (int, float)) and not isinstance(weight_init, bool):
        def init(fan_in, fan_out, rng):
            return normal_init(fan_in, fan_out, rng, std=float(weight_init))
    else:
        raise ValueError(f"weight_init must be 'auto', 'he', 'xavier' or a number, got {weight_init!r}")
    params = {}
    for l, (m_in, m_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:]), start=1):
        params[f"W{l}"] = init(m_in, m_out, rng).astype(dtype)
        params[f"b{l}"] = np.zeros(m_out, dtype=dtype)
    return params


def _output_loss(output, z, y):
    """(BP1) for an MLP's output layer: the mean data loss and delta^(L) = dL/dz^(L) (N, C).

    output "softmax": softmax_cross_entropy, y int labels (N,); "sigmoid": binary cross-entropy on
    z[:, 0], y in {0, 1} (N,); "linear": half_mse_loss, y (N,) or (N, C).
    """
    if output == "softmax":
        loss, dz = softmax_cross_entropy(z, y)
    elif output == "sigmoid":
        loss, dz = binary_cross_entropy_with_logits(z[:, 0], np.asarray(y, dtype=z.dtype))
        dz = np.reshape(dz, z.shape)
    elif output == "linear":
        loss, dz = half_mse_loss(z, y)
    else:
        raise ValueError(f"unknown output {output!r}; choose one of {OUTPUTS}")
    return float(loss), dz.astype(z.dtype, copy=False)


class _MLPLayers:
    """The layers of an MLP, without a loss: params, forward, backward. MLP below adds the output's loss."""

    def __init__(self, layer_sizes, activation, weight_init, seed, dtype):
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer_sizes must list at least an input and an output size, all >= 1; got {layer_sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.layer_sizes, self.activation, self.dtype = sizes, activation, np.dtype(dtype)
        self.params = init_mlp_params(sizes, np.random.default_rng(seed), weight_init=weight_init,
                                      activation=activation, dtype=self.dtype)

    @property
    def num_layers(self):
        return len(self.layer_sizes) - 1

    @property
    def num_params(self):
        return sum(p.size for p in self.params.values())

    def _check_input(self, X):
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"{self!r} expects X of shape (N, {self.layer_sizes[0]}), got {X.shape}")
        return X

    def forward(self, X):
        """The output z^(L) (N, C) (logits, or the prediction for output='linear') and the cache."""
        return mlp_forward(self._check_input(X), self.params, activation=self.activation)

    def backward(self, dout, cache):
        """dout = dL/dz^(L) -> grads keyed like params, plus grads["x"] = dL/dX. No L2 term (.loss adds it)."""
        return mlp_backward(np.asarray(dout, dtype=self.dtype), cache)

    def __call__(self, X):
        """The output alone, for prediction and plots."""
        return self.forward(X)[0]

    def hidden_activations(self, X):
        """[a^(1), ..., a^(L-1)]: what each hidden layer computes for X, each (N, M_l)."""
        act_forward = ACTIVATIONS[self.activation][0]
        a, hidden = self._check_input(X), []
        for l in range(1, self.num_layers):
            a = act_forward(affine_forward(a, self.params[f"W{l}"], self.params[f"b{l}"])[0])[0]
            hidden.append(a)
        return hidden


class MLP(_MLPLayers):
    """Multilayer perceptron: [affine -> activation] * (L - 1) -> affine -> loss.

    layer_sizes  [D, M_1, ..., M_{L-1}, C]: input features, hidden widths, outputs.
                 [D, C] alone is a linear model (softmax / logistic / linear regression).
    activation   the hidden layers' activation, a key of ACTIVATIONS.
    output       "softmax": C >= 2 classes, softmax cross-entropy, y int labels (N,);
                 "sigmoid": C == 1, binary cross-entropy, y in {0, 1} of shape (N,);
                 "linear":  C real outputs, half_mse_loss, y (N,) or (N, C).
    weight_init  "he", "xavier", "auto" or a number (the std), see init_mlp_params. Biases start at 0.
    l2           lambda of the penalty (lambda / 2) * sum_l ||W_l||^2; biases are not penalised.
    seed         seeds the initial weights; dtype float32 is fast, float64 is for gradient checks.
    params       dict "W1", "b1", ..., "WL", "bL", W_l of shape (M_{l-1}, M_l), updated in place by an optimizer.
    """

    def __init__(self, layer_sizes, activation="relu", *, output="softmax", weight_init="auto",
                 l2=0.0, seed=0, dtype=np.float64):
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {OUTPUTS}")
        super().__init__(layer_sizes, activation, weight_init, seed, dtype)
        if output == "softmax" and self.layer_sizes[-1] < 2:
            raise ValueError("a softmax output needs at least 2 classes; use output='sigmoid' for one logit")
        if output == "sigmoid" and self.layer_sizes[-1] != 1:
            raise ValueError(f"a sigmoid output has exactly 1 unit, got {self.layer_sizes[-1]}")
        self.output, self.l2 = output, float(l2)

    def __repr__(self):
        sizes = "-".join(map(str, self.layer_sizes))
        return f"MLP({sizes}, {self.activation}, output={self.output}, l2={self.l2:g})"

    def loss(self, X, y):
        """Mean loss over the batch plus the L2 penalty, and its gradient: (loss, grads keyed like params)."""
        z, cache = self.forward(X)
        if len(y) != len(z):
            raise ValueError(f"X has {len(z)} rows but y has {len(y)}")
        loss, dz = _output_loss(self.output, z, y)                          # BP1
        grads = self.backward(dz, cache)                                    # BP2-BP4, every layer
        del grads["x"]
        if self.l2:
            for l in range(self.num_layers, 0, -1):
                W = self.params[f"W{l}"]
                grads[f"W{l}"] += self.l2 * W
                loss += 0.5 * self.l2 * float(np.sum(W * W))
        return loss, grads

    def predict_proba(self, X):
        """Class probabilities: (N, C) for softmax, P(y = 1) of shape (N,) for sigmoid."""
        if self.output == "linear":
            raise ValueError("predict_proba needs a classifier (output 'softmax' or 'sigmoid')")
        z = self(X)
        return softmax(z) if self.output == "softmax" else sigmoid(z[:, 0])

    def predict(self, X):
        """Class labels (N,) for classifiers, the predicted values for output='linear'."""
        z = self(X)
        if self.output == "linear":
            return z[:, 0] if z.shape[1] == 1 else z
        return z.argmax(axis=1) if self.output == "softmax" else (z[:, 0] > 0).astype(np.int64)
