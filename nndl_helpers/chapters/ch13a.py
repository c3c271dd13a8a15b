"""NumPy code taught in notebooks/13a_vae.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import binary_cross_entropy_with_logits, sigmoid
from nndl_helpers.chapters.ch04a import ACTIVATIONS, init_mlp_params
from nndl_helpers.chapters.ch09 import affine_stack_backward, affine_stack_forward


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
    """A VAE: two chapter-9 affine stacks with the reparameterization trick between them.

    encoder (inference network)   x (N, D) -> affine -> activation -> affine -> [mu | logvar] (N, 2K)
    decoder (generative network)  z (N, K) -> affine -> activation -> affine -> logits (N, D)
    params  W1, b1, W2, b2 (encoder), W3, b3, W4, b4 (decoder), chapter 7's He initialisation.
    """

    def __init__(self, input_dim, hidden=128, latent_dim=2, activation="relu", seed=0, dtype=np.float64):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.input_dim, self.hidden, self.latent_dim = int(input_dim), int(hidden), int(latent_dim)
        self.activation, self.dtype, self.layers = activation, np.dtype(dtype), [activation, "identity"]
        init_rng = np.random.default_rng(seed)        # one generator: encoder first, then decoder
        encoder = init_mlp_params([input_dim, hidden, 2 * latent_dim], init_rng, weight_init="he", dtype=dtype)
        decoder = init_mlp_params([latent_dim, hidden, input_dim], init_rng, weight_init="he", dtype=dtype)
        self.params = encoder | {f"{k[0]}{int(k[1:]) + 2}": p for k, p in decoder.items()}   # W1, b1 -> W3, b3, ...

    def forward(self, X, eps):
        """X (N, D) and a draw eps (N, K) of N(0, I) -> logits (N, D), mu and logvar (N, K), and the cache."""
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"NumpyVAE expects X of shape (N, {self.input_dim}), got {X.shape}")
        stats, encoder_cache = affine_stack_forward(X, self.params, activations=self.layers)
        mu, logvar = np.split(stats, 2, axis=1)
        z, reparameterize_cache = reparameterize_forward(mu, logvar, eps)     # z = mu + sigma * eps
        logits, decoder_cache = affine_stack_forward(z, self.params, activations=self.layers, first=3)
        return logits, mu, logvar, (encoder_cache, reparameterize_cache, decoder_cache)

    def backward(self, dlogits, dmu, dlogvar, cache):
        """grads keyed like params from the gradients of the three outputs (dmu, dlogvar: of the KL term)."""
        encoder_cache, reparameterize_cache, decoder_cache = cache
        grads = affine_stack_backward(dlogits, decoder_cache)
        dmu_z, dlogvar_z = reparameterize_backward(grads.pop("x"), reparameterize_cache)
        dstats = np.concatenate([dmu_z + dmu, dlogvar_z + dlogvar], axis=1)    # both paths reach mu, logvar
        grads |= affine_stack_backward(dstats, encoder_cache)
        del grads["x"]
        return grads

    def __call__(self, X, eps=None):       # the logits alone; eps=None: z = mu, the mean code
        return self.forward(X, np.zeros((len(X), self.latent_dim), self.dtype) if eps is None else eps)[0]

    def encode(self, X):                   # X (N, D) -> mu, logvar (N, K), the parameters of q(z | x)
        return self.forward(X, np.zeros((len(X), self.latent_dim), self.dtype))[1:3]

    def decode(self, z):                   # z (N, K) -> Bernoulli logits (N, D)
        return affine_stack_forward(np.asarray(z, dtype=self.dtype), self.params, activations=self.layers, first=3)[0]

    def loss_terms(self, X, eps):
        """The negative ELBO's two terms for one draw eps, nats per image: {"reconstruction", "kl"}."""
        logits, mu, logvar, _ = self.forward(X, eps)
        return {"reconstruction": bernoulli_nll(logits, np.asarray(X, self.dtype))[0], "kl": gaussian_kl(mu, logvar)[0]}

    def loss(self, X, eps):
        """Negative ELBO (nats per image) for one draw eps (N, K) of N(0, I) per row, and grads keyed like params."""
        logits, mu, logvar, cache = self.forward(X, eps)
        reconstruction, dlogits = bernoulli_nll(logits, np.asarray(X, self.dtype))
        kl, dmu, dlogvar = gaussian_kl(mu, logvar)
        return reconstruction + kl, self.backward(dlogits, dmu, dlogvar, cache)


def negative_elbo(model, X, rng, batch_size=500):
    """Mean negative ELBO of a NumpyVAE over all rows of X, one z per row drawn from `rng` (no gradients)."""
    total = 0.0
    for start in range(0, len(X), batch_size):
        x = X[start:start + batch_size]
        eps = rng.standard_normal((len(x), model.latent_dim)).astype(model.dtype)
        total += sum(model.loss_terms(x, eps).values()) * len(x)
    return total / len(X)
