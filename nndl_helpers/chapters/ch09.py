"""NumPy code taught in notebooks/09_unsupervised_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def check_data_matrix(X, name="X", min_rows=1):
    """X as a finite float array of shape (N, D), one sample per row; a clear ValueError otherwise."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N samples, D features), got shape {X.shape}; "
                         f"flatten images first, e.g. X.reshape(len(X), -1)")
    if X.shape[0] < min_rows or X.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} rows and 1 column, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def reconstruction_mse(X_hat, X):
    """Mean squared error per pixel (per feature), the figure we compare all models by."""
    X_hat, X = np.asarray(X_hat, dtype=np.float64), np.asarray(X, dtype=np.float64)
    if X_hat.shape != X.shape:
        raise ValueError(f"reconstruction has shape {X_hat.shape}, data has shape {X.shape}")
    return float(np.mean((X_hat - X) ** 2))


class PCA:
    """Principal component analysis (主成分分析) from scratch.

    fit(X)  X (N, D). method="eigh": eigen-decomposition of the covariance matrix
            Sigma = (1/N) Xc^T Xc (Xc = X minus its mean), the textbook route; method="svd": the
            singular value decomposition Xc = U S V^T, which never forms Sigma (eigenvalues S^2 / N).
    Keeps all min(N, D) components, sorted by decreasing variance; transform / inverse_transform
    take the number k of components to use, so changing k costs nothing.
    mean (D,), components (K, D) orthonormal rows w_1, ..., w_K (each with its largest entry made
    positive, so that both methods return the same signs), variances (K,) = the eigenvalues lambda_k,
    explained_variance_ratio (K,) = lambda_k / sum of all eigenvalues.
    """
    METHODS = ("eigh", "svd")

    def __init__(self, method="eigh"):
        if method not in self.METHODS:
            raise ValueError(f"unknown PCA method {method!r}; choose one of {self.METHODS}")
        self.method = method

    def fit(self, X):
        X = check_data_matrix(X, min_rows=2).astype(np.float64)
        n = X.shape[0]
        self.mean = X.mean(axis=0)
        Xc = X - self.mean
        if self.method == "eigh":
            cov = Xc.T @ Xc / n                           # (D, D)
            variances, vectors = np.linalg.eigh(cov)       # ascending; vectors in the columns
            order = np.argsort(variances)[::-1][:min(X.shape)]
            variances, components = variances[order], vectors[:, order].T
        else:
            _, s, vt = np.linalg.svd(Xc, full_matrices=False)  # s descending
            variances, components = s**2 / n, vt
        variances = np.maximum(variances, 0.0)  # round-off can make ~0 eigenvalues slightly negative
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        self.components = components * signs[:, None]
        self.variances = variances
        self.explained_variance_ratio = variances / variances.sum()
        return self

    def _check_k(self, k):
        if k is not None and not 1 <= int(k) <= len(self.components):
            raise ValueError(f"k must lie in [1, {len(self.components)}], got {k}")
        return len(self.components) if k is None else int(k)

    def transform(self, X, k=None):
        """Codes Z (N, k) = (X - mean) W_k^T: the coordinates along the first k components."""
        k, X = self._check_k(k), check_data_matrix(X)
        if X.shape[1] != len(self.mean):
            raise ValueError(f"PCA was fitted on {len(self.mean)} features, X has shape {X.shape}")
        return (X - self.mean) @ self.components[:k].T

    def inverse_transform(self, Z):
        """Reconstructions (N, D) = Z W_k + mean from codes Z (N, k)."""
        Z = check_data_matrix(Z, "Z")
        return Z @ self.components[:self._check_k(Z.shape[1])] + self.mean

    def reconstruct(self, X, k):
        return self.inverse_transform(self.transform(X, k))


def squared_distances(X, C):
    """||x_n - c_k||^2 for every row of X (N, D) and C (K, D): (N, K), by |x|^2 - 2 x.c + |c|^2."""
    d = (X * X).sum(axis=1)[:, None] - 2 * X @ C.T + (C * C).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def kmeans_plus_plus(X, k, rng):
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each new centre is drawn with probability
    proportional to its squared distance to the nearest centre chosen so far."""
    centers = [X[rng.integers(len(X))]]
    closest = squared_distances(X, np.array(centers))[:, 0]
    for _ in range(1, k):
        centers.append(X[rng.choice(len(X), p=closest / closest.sum())])
        closest = np.minimum(closest, squared_distances(X, centers[-1][None])[:, 0])
    return np.array(centers)


def kmeans(X, k, *, max_iters=100, rng=None):
    """K-means clustering (K均值聚类), Lloyd's algorithm, from k-means++ seeds.

    Alternates (1) assign each x_n to its nearest centre and (2) move each centre to the mean of
    its points, until no assignment changes. Each step can only lower the within-cluster sum of
    squares J = sum_n ||x_n - c_{k(n)}||^2 (the inertia).
    Returns centers (K, D), labels (N,) and the list of J after every assignment step.
    """
    X = check_data_matrix(X).astype(np.float64)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= len(X)):
        raise ValueError(f"k must be an integer in [1, N = {len(X)}], got {k!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    centers = kmeans_plus_plus(X, k, rng)
    labels, inertia = None, []
    for _ in range(max_iters):
        d = squared_distances(X, centers)
        new_labels = d.argmin(axis=1)
        inertia.append(float(d[np.arange(len(X)), new_labels].sum()))
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for j in range(k):
            members = X[labels == j]
            if len(members):              # an empty cluster keeps its old centre
                centers[j] = members.mean(axis=0)
    return centers, labels, inertia


from nndl_helpers.chapters.ch04a import ACTIVATIONS, affine_backward, affine_forward, half_mse_loss, init_mlp_params


def affine_stack_forward(x, params, *, activations, first=1):
    """Layers l = first, first + 1, ... of [affine -> activation], each with its own activation:

        a_l = act_l(a_{l-1} W_l + b_l),  a_{first-1} = x,  act_l = activations[l - first] (a key of ACTIVATIONS)

    with W_l, b_l = params[f"W{l}"], params[f"b{l}"]. Returns the last a_l and the cache for affine_stack_backward.
    """
    a, caches = x, []
    for l, name in enumerate(activations, start=first):
        z, affine_cache = affine_forward(a, params[f"W{l}"], params[f"b{l}"])
        a, act_cache = ACTIVATIONS[name][0](z)
        caches.append((l, name, affine_cache, act_cache))
    return a, caches


def affine_stack_backward(dout, cache):
    """Gradients of affine_stack_forward for dout = dL/d(last a_l): W_l and b_l of its layers (keys as in
    params), and grads["x"] = dL/dx for a caller that backpropagates further."""
    grads = {}
    for l, name, affine_cache, act_cache in reversed(cache):
        dz = ACTIVATIONS[name][1](dout, act_cache)
        dout, grads[f"W{l}"], grads[f"b{l}"] = affine_backward(dz, affine_cache)
    grads["x"] = dout
    return grads


def autoencoder_layers(input_dim, code_size, hidden=(), activation="relu", code_activation="identity", *,
                       seed=0, dtype=np.float64):
    """The layers of an autoencoder x -> z -> x_hat: (sizes, activations, params).

    sizes        [D, *hidden, K, *reversed(hidden), D]; hidden=() is NNDL's two-layer autoencoder.
    activations  one per layer: `activation` in the hidden layers, code_activation on the code z,
                 sigmoid on the output (x_hat in [0, 1], like the pixels).
    params       W1, b1, ..., WL, bL: chapter 4's rule (He before ReLU-type activations, Xavier otherwise)
                 with chapter 7's initializers; biases 0.
    """
    hidden = tuple(int(h) for h in hidden)
    if int(input_dim) < 1 or int(code_size) < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"sizes must be >= 1, got input_dim={input_dim}, code_size={code_size}, hidden={hidden}")
    for name in (activation, code_activation):
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    sizes = [int(input_dim), *hidden, int(code_size), *reversed(hidden), int(input_dim)]
    activations = [activation] * len(hidden) + [code_activation] + [activation] * len(hidden) + ["sigmoid"]
    init_rng, params = np.random.default_rng(seed), {}
    for l, (m_in, m_out, name) in enumerate(zip(sizes[:-1], sizes[1:], activations), start=1):
        layer = init_mlp_params([m_in, m_out], init_rng, weight_init="auto", activation=name, dtype=dtype)
        params[f"W{l}"], params[f"b{l}"] = layer["W1"], layer["b1"]
    return sizes, activations, params


def kl_sparsity_penalty(a, rho):
    """Sparsity penalty of a sparse autoencoder (稀疏自编码器), as in NNDL §9.1.

        rho_hat_j = (1/N) sum_n a_nj           the average activation of hidden unit j over the batch
        penalty   = sum_j KL(rho || rho_hat_j) = sum_j [rho log(rho / rho_hat_j)
                                                       + (1 - rho) log((1 - rho) / (1 - rho_hat_j))]

    Inputs:  a (N, M), activations of sigmoid units, in [0, 1]; rho, the target activation, in (0, 1).
    Returns: penalty (float) and da (N, M), every row equal to (1/N) (-rho / rho_hat + (1 - rho) / (1 - rho_hat)).
    rho_hat is clipped to [1e-6, 1 - 1e-6], so a unit saturated on the whole batch gives a large but
    finite penalty (in float32 a sigmoid can round to exactly 0 or 1).
    """
    if not 0 < rho < 1:
        raise ValueError(f"the sparsity target rho must lie strictly between 0 and 1, got {rho!r}")
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"kl_sparsity_penalty: a must be 2-D (N, M) with N >= 1, got shape {a.shape}")
    if np.any(a < 0) or np.any(a > 1):
        raise ValueError("kl_sparsity_penalty: activations must lie in [0, 1] (use sigmoid code units)")
    rho_hat = np.clip(a.mean(axis=0), 1e-6, 1 - 1e-6)
    penalty = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    drho_hat = -rho / rho_hat + (1 - rho) / (1 - rho_hat)
    return float(penalty), np.broadcast_to(drho_hat / a.shape[0], a.shape).astype(a.dtype)


def masking_noise(x, p, rng):
    """The corruption of a denoising autoencoder (降噪自编码器): each entry of x is set to 0 with
    probability p, independently (NNDL §9.1). Returns a new array; x is left unchanged."""
    if not 0 <= p < 1:
        raise ValueError(f"the noise level p is the probability of zeroing an entry and must lie in [0, 1), got {p!r}")
    return x * (rng.random(x.shape) >= p).astype(x.dtype)


class Autoencoder:
    """An autoencoder (自编码器) x -> z -> x_hat, layers as in autoencoder_layers (same arguments).

    loss    1/(2N) sum_n ||x_hat_n - x_n||^2 over a batch, x_hat computed from X_input: X itself, or a
            corrupted copy of X for a denoising autoencoder (降噪自编码器).
    params  "W1", "b1", ..., "WL", "bL"; an optimizer updates these arrays in place.
    """

    def __init__(self, input_dim, code_size, hidden=(), activation="relu", code_activation="identity",
                 seed=0, dtype=np.float64):
        self.sizes, self.activations, params = autoencoder_layers(
            input_dim, code_size, hidden, activation, code_activation, seed=seed, dtype=dtype)
        self.params = params                                                   # W1, b1, ..., WL, bL
        self.code_layer, self.dtype = len(self.sizes) // 2, np.dtype(dtype)     # layer code_layer outputs z
        self.code_size, self.num_params = self.sizes[self.code_layer], sum(p.size for p in params.values())

    def __repr__(self):
        return f"{type(self).__name__}({'-'.join(map(str, self.sizes))}, code: {self.activations[self.code_layer - 1]})"

    def _check(self, X, X_input=None):         # X and X_input (default X) as arrays (N, D), or a ValueError
        X = np.asarray(X, dtype=self.dtype)
        X_input = X if X_input is None else np.asarray(X_input, dtype=self.dtype)
        for name, A in (("X", X), ("X_input", X_input)):
            if A.ndim != 2 or A.shape != (len(X), self.sizes[0]):
                raise ValueError(f"{self!r} expects {name} of shape (N, {self.sizes[0]}) like X, got {A.shape}")
        return X, X_input

    def forward(self, X):
        """X (N, D) -> x_hat (N, D), the code z (N, K) and the cache for backward."""
        k = self.code_layer
        z, encoder_cache = affine_stack_forward(self._check(X)[0], self.params, activations=self.activations[:k])
        x_hat, decoder_cache = affine_stack_forward(z, self.params, activations=self.activations[k:], first=k + 1)
        return x_hat, z, (encoder_cache, decoder_cache)

    def backward(self, dx_hat, dz, cache):
        """Gradients keyed like params from the upstream gradients of x_hat and of the code z (None: zero)."""
        encoder_cache, decoder_cache = cache
        grads = affine_stack_backward(dx_hat, decoder_cache)
        dz = grads.pop("x") if dz is None else grads.pop("x") + dz    # z feeds the decoder and a penalty
        grads |= affine_stack_backward(dz, encoder_cache)
        del grads["x"]
        return grads

    def loss(self, X, X_input=None):
        """(loss, grads) for a batch: X (N, D) is the target, X_input what the encoder sees (default X)."""
        X, X_input = self._check(X, X_input)
        x_hat, _, cache = self.forward(X_input)
        loss, dx_hat = half_mse_loss(x_hat, X)
        return loss, self.backward(dx_hat, None, cache)

    def encode(self, X):
        """The codes z (N, K) of X (N, D)."""
        return affine_stack_forward(self._check(X)[0], self.params, activations=self.activations[:self.code_layer])[0]

    def __call__(self, X):
        """The reconstructions x_hat (N, D) of X (N, D)."""
        return self.forward(X)[0]

    reconstruct = __call__


class SparseAutoencoder(Autoencoder):
    """A sparse autoencoder (稀疏自编码器): sigmoid code units and NNDL's penalised loss

        1/(2N) sum_n ||x_hat_n - x_n||^2  +  sparsity_weight * sum_j KL(rho || rho_hat_j)  +  (l2/2) sum_l ||W_l||^2

    with rho = sparsity_target. The KL term is a layer of its own on the code z (kl_sparsity_penalty): its
    gradient joins, at z, the gradient that comes back from the decoder. Biases carry no L2 penalty.
    """

    def __init__(self, input_dim, code_size, hidden=(), activation="relu", sparsity_weight=1.0,
                 sparsity_target=0.05, l2=0.0, seed=0, dtype=np.float64):
        if sparsity_weight < 0 or l2 < 0 or not 0 < sparsity_target < 1:
            raise ValueError(f"need sparsity_weight >= 0, l2 >= 0 and a sparsity_target in (0, 1), got "
                             f"{sparsity_weight}, {l2}, {sparsity_target}")
        super().__init__(input_dim, code_size, hidden, activation, "sigmoid", seed=seed, dtype=dtype)
        self.sparsity_weight, self.sparsity_target, self.l2 = float(sparsity_weight), float(sparsity_target), float(l2)

    def loss_terms(self, X, X_input=None):
        """The loss's three terms for a batch, {"reconstruction", "sparsity", "l2"} (no gradients)."""
        X, X_input = self._check(X, X_input)
        x_hat, z, _ = self.forward(X_input)
        return {"reconstruction": half_mse_loss(x_hat, X)[0],
                "sparsity": self.sparsity_weight * kl_sparsity_penalty(z, self.sparsity_target)[0],
                "l2": 0.5 * self.l2 * sum(float(np.sum(W * W)) for k, W in self.params.items() if k[0] == "W")}

    def loss(self, X, X_input=None):
        """(loss, grads) for a batch, as Autoencoder.loss, with the KL and L2 terms added."""
        X, X_input = self._check(X, X_input)
        x_hat, z, cache = self.forward(X_input)
        loss, dx_hat = half_mse_loss(x_hat, X)
        penalty, dz = kl_sparsity_penalty(z, self.sparsity_target)
        grads = self.backward(dx_hat, self.sparsity_weight * dz, cache)
        loss += self.sparsity_weight * penalty
        for k, W in self.params.items():
            if k[0] == "W" and self.l2:
                grads[k] = grads[k] + self.l2 * W
                loss += 0.5 * self.l2 * float(np.sum(W * W))
        return float(loss), grads


from nndl_helpers.chapters.ch07a import Adam


def fit_autoencoder(model, X, *, epochs, batch_size=128, lr=1e-3, noise=0.0, seed=0, on_epoch=None):
    """Train `model` on X (N, D) with mini-batches and chapter 7's Adam.

    noise > 0 makes it a denoising autoencoder: every batch the encoder sees masking_noise(x, noise)
    (fresh noise each time) and must reconstruct the clean x. on_epoch(epoch, mean loss) is called
    after every epoch (progress bars, live curves). Returns the mean training loss of every epoch.
    """
    X = np.asarray(X, dtype=model.dtype)          # model.loss checks the shape
    rng = np.random.default_rng(seed)
    optimizer = Adam(lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X))
        total = 0.0
        for start in range(0, len(X), batch_size):
            xb = X[order[start:start + batch_size]]
            x_in = masking_noise(xb, noise, rng) if noise else xb
            loss, grads = model.loss(xb, x_in)
            optimizer.step(model.params, grads)
            total += loss * len(xb)
        history.append(total / len(X))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return history
