"""NumPy code taught in notebooks/13a_vae.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import binary_cross_entropy_with_logits, sigmoid
from nndl_helpers.chapters.ch04 import ACTIVATIONS, affine_backward, affine_forward


def reparameterize_forward(mu, logvar, eps):
    """The reparameterization trick: z = mu + sigma * eps with sigma = exp(logvar / 2).

    Inputs:  mu, logvar (N, K), the mean and log-variance of q(z | x); eps (N, K), a draw of N(0, I).
    Returns: z (N, K), a sample of N(mu, diag(sigma^2)) that is a differentiable function of mu and
             logvar; cache for reparameterize_backward.
    """
    if not (np.shape(mu) == np.shape(logvar) == np.shape(eps)):
        raise ValueError(f"reparameterize_forward: mu {np.shape(mu)}, logvar {np.shape(logvar)} and "
                         f"eps {np.shape(eps)} must have the same shape (N, K)")
    sigma = np.exp(0.5 * logvar)
    return mu + sigma * eps, (sigma, eps)


def reparameterize_backward(dz, cache):
    """dz (N, K) -> dmu = dz, dlogvar = dz * eps * sigma / 2 (because d sigma / d logvar = sigma / 2)."""
    sigma, eps = cache
    return dz, dz * eps * 0.5 * sigma


def gaussian_kl(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over the K latent units, averaged over the N rows.

    KL = 1/2 sum_k (mu_k^2 + sigma_k^2 - 1 - log sigma_k^2), in closed form because both are Gaussian.
    Returns: kl (float), dmu (N, K) = mu / N, dlogvar (N, K) = (exp(logvar) - 1) / (2 N).
    """
    n = mu.shape[0]
    var = np.exp(logvar)
    kl = 0.5 * np.sum(mu * mu + var - 1.0 - logvar) / n
    return float(kl), mu / n, 0.5 * (var - 1.0) / n


def bernoulli_nll(logits, x):
    """-log p(x | z) for a Bernoulli decoder, summed over the D pixels and averaged over the N rows.

    Inputs:  logits (N, D), the decoder's output (p = sigmoid(logits)); x (N, D) in [0, 1].
    Returns: nll (float, nats per image) and dlogits (N, D) = (sigmoid(logits) - x) / N.
    It is chapter 3's binary cross-entropy, which averages over all N * D entries, times D.
    """
    loss, dlogits = binary_cross_entropy_with_logits(logits, x)
    d = logits.shape[1]
    return loss * d, dlogits * d


class NumpyVAE:
    """A VAE made of chapter-4 blocks: two MLPs and the reparameterization trick between them.

    encoder (inference network)   x (N, D) -> affine -> activation -> affine -> [mu | logvar] (N, 2K)
    decoder (generative network)  z (N, K) -> affine -> activation -> affine -> logits (N, D)

    params  "W1", "b1", "W2", "b2" (encoder), "W3", "b3", "W4", "b4" (decoder), He-initialised;
            an optimizer updates these arrays in place.
    """

    def __init__(self, input_dim, hidden=128, latent_dim=2, activation="relu", seed=0, dtype=np.float64):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.input_dim, self.hidden, self.latent_dim = int(input_dim), int(hidden), int(latent_dim)
        self.activation, self.dtype = activation, np.dtype(dtype)
        init_rng = np.random.default_rng(seed)
        shapes = {"1": (input_dim, hidden), "2": (hidden, 2 * latent_dim),
                  "3": (latent_dim, hidden), "4": (hidden, input_dim)}
        self.params = {}
        for l, (m_in, m_out) in shapes.items():
            self.params[f"W{l}"] = (np.sqrt(2.0 / m_in) * init_rng.standard_normal((m_in, m_out))).astype(self.dtype)
            self.params[f"b{l}"] = np.zeros(m_out, dtype=self.dtype)

    def _mlp_forward(self, x, first):
        """affine -> activation -> affine with layers `first` and `first + 1`."""
        act_forward = ACTIVATIONS[self.activation][0]
        p = self.params
        h_pre, cache_1 = affine_forward(x, p[f"W{first}"], p[f"b{first}"])
        h, cache_act = act_forward(h_pre)
        out, cache_2 = affine_forward(h, p[f"W{first + 1}"], p[f"b{first + 1}"])
        return out, (cache_1, cache_act, cache_2)

    def _mlp_backward(self, dout, cache, first, grads):
        cache_1, cache_act, cache_2 = cache
        dh, grads[f"W{first + 1}"], grads[f"b{first + 1}"] = affine_backward(dout, cache_2)
        dh_pre = ACTIVATIONS[self.activation][1](dh, cache_act)
        dx, grads[f"W{first}"], grads[f"b{first}"] = affine_backward(dh_pre, cache_1)
        return dx

    def encode(self, X):
        """X (N, D) -> mu, logvar, each (N, K): the parameters of q(z | x)."""
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"NumpyVAE expects X of shape (N, {self.input_dim}), got {X.shape}")
        stats = self._mlp_forward(X, 1)[0]
        return stats[:, :self.latent_dim], stats[:, self.latent_dim:]

    def decode(self, z):
        """z (N, K) -> Bernoulli logits (N, D)."""
        return self._mlp_forward(np.asarray(z, dtype=self.dtype), 3)[0]

    def loss(self, X, eps):
        """Negative ELBO (nats per image) for one draw eps (N, K) of N(0, I) per row, and its gradients.

        Returns (loss, grads, parts) with grads a dict keyed like params and
        parts = {"reconstruction": ..., "kl": ...}, the two terms of the loss.
        """
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"NumpyVAE expects X of shape (N, {self.input_dim}), got {X.shape}")
        k = self.latent_dim
        stats, enc_cache = self._mlp_forward(X, 1)                       # encoder
        mu, logvar = stats[:, :k], stats[:, k:]
        z, rep_cache = reparameterize_forward(mu, logvar, eps)           # z = mu + sigma * eps
        logits, dec_cache = self._mlp_forward(z, 3)                      # decoder
        reconstruction, dlogits = bernoulli_nll(logits, X)
        kl, dmu_kl, dlogvar_kl = gaussian_kl(mu, logvar)

        grads = {}
        dz = self._mlp_backward(dlogits, dec_cache, 3, grads)
        dmu, dlogvar = reparameterize_backward(dz, rep_cache)
        dstats = np.concatenate([dmu + dmu_kl, dlogvar + dlogvar_kl], axis=1)  # both terms reach mu, logvar
        self._mlp_backward(dstats, enc_cache, 1, grads)
        return reconstruction + kl, grads, {"reconstruction": reconstruction, "kl": kl}

    def negative_elbo(self, X, rng, batch_size=500):
        """Mean negative ELBO over all rows of X with one z per row drawn from `rng` (no gradients)."""
        total = 0.0
        for start in range(0, len(X), batch_size):
            x = np.asarray(X[start:start + batch_size], dtype=self.dtype)
            mu, logvar = self.encode(x)
            z = reparameterize_forward(mu, logvar, rng.standard_normal(mu.shape).astype(self.dtype))[0]
            total += (bernoulli_nll(self.decode(z), x)[0] + gaussian_kl(mu, logvar)[0]) * len(x)
        return total / len(X)
