"""NumPy code taught in notebooks/09_unsupervised_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch04 import ACTIVATIONS, affine_backward, affine_forward, mse_loss


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
        if k is None:
            return len(self.components)
        if not 1 <= int(k) <= len(self.components):
            raise ValueError(f"k must lie in [1, {len(self.components)}], got {k}")
        return int(k)

    def transform(self, X, k=None):
        """Codes Z (N, k) = (X - mean) W_k^T: the coordinates along the first k components."""
        k = self._check_k(k)
        X = check_data_matrix(X)
        if X.shape[1] != len(self.mean):
            raise ValueError(f"PCA was fitted on {len(self.mean)} features, X has shape {X.shape}")
        return (X - self.mean) @ self.components[:k].T

    def inverse_transform(self, Z):
        """Reconstructions (N, D) = Z W_k + mean from codes Z (N, k)."""
        Z = check_data_matrix(Z, "Z")
        k = self._check_k(Z.shape[1])
        return Z @ self.components[:k] + self.mean

    def reconstruct(self, X, k):
        return self.inverse_transform(self.transform(X, k))


def reconstruction_mse(X_hat, X):
    """Mean squared error per pixel (per feature), the figure we compare all models by."""
    X_hat, X = np.asarray(X_hat, dtype=np.float64), np.asarray(X, dtype=np.float64)
    if X_hat.shape != X.shape:
        raise ValueError(f"reconstruction has shape {X_hat.shape}, data has shape {X.shape}")
    return float(np.mean((X_hat - X) ** 2))


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


from nndl_helpers.chapters.ch07a import Adam as AdamOptimizer


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
    """An autoencoder (自编码器) made of chapter-4 blocks.

    encoder  x (N, D) -> [affine -> activation] for each width in `hidden` -> affine -> code_activation -> z (N, K)
    decoder  z (N, K) -> [affine -> activation] for each width in reversed(hidden) -> affine -> sigmoid -> x_hat (N, D)

    hidden=() is NNDL's two-layer autoencoder x -> z -> x_hat. The output sigmoid keeps the
    reconstructions in [0, 1] like the pixels. The loss, averaged over the N rows of a batch, is

        1/(2N) sum_n ||x_hat_n - x_n||^2  +  sparsity_weight * sum_j KL(rho || rho_hat_j)  +  (l2/2) sum_l ||W_l||^2

    where the KL term (a sparse autoencoder) needs code_activation="sigmoid" and rho = sparsity_target.
    params  "W1", "b1", ..., "WL", "bL", W_l of shape (M_{l-1}, M_l); He initialisation before ReLU-type
            activations, Xavier otherwise; biases 0. An optimizer updates these arrays in place.
    """

    def __init__(self, input_dim, code_size, hidden=(), activation="relu", code_activation="identity",
                 sparsity_weight=0.0, sparsity_target=0.05, l2=0.0, seed=0, dtype=np.float64):
        hidden = tuple(int(h) for h in hidden)
        if int(input_dim) < 1 or int(code_size) < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"sizes must be >= 1, got input_dim={input_dim}, code_size={code_size}, hidden={hidden}")
        for name in (activation, code_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
        if sparsity_weight < 0:
            raise ValueError(f"sparsity_weight must be >= 0, got {sparsity_weight}")
        if sparsity_weight and code_activation != "sigmoid":
            raise ValueError("the KL sparsity penalty needs activations in (0, 1): use code_activation='sigmoid'")
        if sparsity_weight and not 0 < sparsity_target < 1:
            raise ValueError(f"sparsity_target must lie in (0, 1), got {sparsity_target}")
        self.sizes = [int(input_dim), *hidden, int(code_size), *reversed(hidden), int(input_dim)]
        self.code_layer = len(hidden) + 1
        self.activations = [activation] * len(hidden) + [code_activation] + [activation] * len(hidden) + ["sigmoid"]
        self.sparsity_weight, self.sparsity_target = float(sparsity_weight), float(sparsity_target)
        self.l2, self.dtype = float(l2), np.dtype(dtype)
        init_rng = np.random.default_rng(seed)
        self.params = {}
        for l, (m_in, m_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            he = self.activations[l - 1] in ("relu", "leaky_relu", "elu", "softplus", "silu", "gelu")
            std = np.sqrt(2.0 / m_in) if he else np.sqrt(2.0 / (m_in + m_out))
            self.params[f"W{l}"] = (std * init_rng.standard_normal((m_in, m_out))).astype(self.dtype)
            self.params[f"b{l}"] = np.zeros(m_out, dtype=self.dtype)

    @property
    def code_size(self):
        return self.sizes[self.code_layer]

    @property
    def num_params(self):
        return sum(p.size for p in self.params.values())

    def __repr__(self):
        kind = "sparse " if self.sparsity_weight else ""
        return f"{kind}Autoencoder({'-'.join(map(str, self.sizes))}, code: {self.activations[self.code_layer - 1]})"

    def _check_input(self, X):
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"{self!r} expects X of shape (N, {self.sizes[0]}), got {X.shape}")
        return X

    def _forward(self, X, first=1, last=None):
        """Run layers first..last on X; returns the output and the caches of those layers."""
        last = len(self.sizes) - 1 if last is None else last
        a, caches = X, []
        for l in range(first, last + 1):
            z, affine_cache = affine_forward(a, self.params[f"W{l}"], self.params[f"b{l}"])
            a, act_cache = ACTIVATIONS[self.activations[l - 1]][0](z)
            caches.append((affine_cache, act_cache))
        return a, caches

    def encode(self, X):
        """Codes z (N, K)."""
        return self._forward(self._check_input(X), last=self.code_layer)[0]

    def decode(self, Z):
        """Reconstructions x_hat (N, D) from codes Z (N, K)."""
        Z = np.asarray(Z, dtype=self.dtype)
        if Z.ndim != 2 or Z.shape[1] != self.code_size:
            raise ValueError(f"{self!r} expects codes of shape (N, {self.code_size}), got {Z.shape}")
        return self._forward(Z, first=self.code_layer + 1)[0]

    def reconstruct(self, X):
        return self._forward(self._check_input(X))[0]

    def loss(self, X, X_input=None):
        """Loss and gradients for a batch. X (N, D) is the target; X_input, what the encoder sees
        (a corrupted copy of X for a denoising autoencoder), defaults to X.

        Returns (loss, grads), grads a dict keyed like params; the loss's parts are kept in
        self.last_terms ("reconstruction", "sparsity", "rho_hat").
        """
        X = self._check_input(X)
        X_input = X if X_input is None else self._check_input(X_input)
        if X_input.shape != X.shape:
            raise ValueError(f"X_input has shape {X_input.shape} but X has shape {X.shape}")
        x_hat, caches = self._forward(X_input)
        loss, da = mse_loss(x_hat, X)
        self.last_terms = {"reconstruction": loss, "sparsity": 0.0}
        grads = {}
        for l in range(len(caches), 0, -1):
            affine_cache, act_cache = caches[l - 1]
            if l == self.code_layer and self.sparsity_weight:
                code = act_cache  # the sigmoid's cache is its output a = z
                penalty, dcode = kl_sparsity_penalty(code, self.sparsity_target)
                da = da + self.sparsity_weight * dcode
                loss += self.sparsity_weight * penalty
                self.last_terms.update(sparsity=penalty, rho_hat=code.mean(axis=0))
            dz = ACTIVATIONS[self.activations[l - 1]][1](da, act_cache)
            da, grads[f"W{l}"], grads[f"b{l}"] = affine_backward(dz, affine_cache)
            if self.l2:
                W = self.params[f"W{l}"]
                grads[f"W{l}"] = grads[f"W{l}"] + self.l2 * W
                loss += 0.5 * self.l2 * float(np.sum(W * W))
        return float(loss), grads


def fit_autoencoder(model, X, *, epochs, batch_size=128, lr=1e-3, noise=0.0, seed=0, on_epoch=None):
    """Train `model` on X (N, D) with mini-batches and chapter 7's Adam.

    noise > 0 makes it a denoising autoencoder: every batch the encoder sees masking_noise(x, noise)
    (fresh noise each time) and must reconstruct the clean x. on_epoch(epoch, mean loss) is called
    after every epoch (progress bars, live curves). Returns the mean training loss of every epoch.
    """
    X = model._check_input(X)
    rng = np.random.default_rng(seed)
    optimizer = AdamOptimizer(lr=lr)
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
