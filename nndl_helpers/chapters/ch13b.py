"""NumPy code taught in notebooks/13b_gan.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch03 import binary_cross_entropy_with_logits
from nndl_helpers.chapters.ch04a import MLP


def ring_centres(modes=8, radius=2.0):
    """Centres (modes, 2) of `modes` points evenly spaced on a circle."""
    angles = 2 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample_ring(n, rng, modes=8, radius=2.0, std=0.1, dtype=np.float32):
    """n points (n, 2) from a mixture of `modes` equally likely Gaussians on a ring, and their mode (n,)."""
    mode = rng.integers(modes, size=n)
    x = ring_centres(modes, radius)[mode] + std * rng.standard_normal((n, 2))
    return x.astype(dtype), mode


def ring_density(x, modes=8, radius=2.0, std=0.1):
    """The exact density p_r(x) of sample_ring at points x (N, 2)."""
    d2 = ((x[:, None, :] - ring_centres(modes, radius)[None]) ** 2).sum(axis=2)
    return np.exp(-d2 / (2 * std**2)).mean(axis=1) / (2 * np.pi * std**2)


def mode_coverage(samples, modes=8, radius=2.0, std=0.1, n_sigma=3.0, min_share=0.02):
    """How well `samples` (N, 2) cover the ring of Gaussians.

    Returns (modes_covered, high_quality_share, counts): a sample is high quality if it lies within
    n_sigma * std of its nearest centre; a mode is covered if at least min_share of all samples are
    high-quality samples of that mode; counts (modes,) are the high-quality samples per mode.
    """
    samples = np.asarray(samples)
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"mode_coverage: samples must have shape (N, 2), got {samples.shape}")
    distance = np.linalg.norm(samples[:, None, :] - ring_centres(modes, radius)[None], axis=2)
    nearest, good = distance.argmin(axis=1), distance.min(axis=1) < n_sigma * std
    counts = np.bincount(nearest[good], minlength=modes)
    return int((counts >= min_share * len(samples)).sum()), float(good.mean()), counts


GENERATOR_LOSSES = ("non_saturating", "saturating")


def discriminator_loss(real_logits, fake_logits):
    """Discriminator's loss -mean log D(x) - mean log(1 - D(G(z))), from the logits s (N,), D = sigmoid(s).

    Returns (loss, d_real_logits, d_fake_logits); the two batches may differ in size.
    """
    loss_real, d_real = binary_cross_entropy_with_logits(real_logits, np.ones_like(real_logits))
    loss_fake, d_fake = binary_cross_entropy_with_logits(fake_logits, np.zeros_like(fake_logits))
    return loss_real + loss_fake, d_real, d_fake


def generator_loss(fake_logits, kind="non_saturating"):
    """Generator's loss from the discriminator's logits s (N,) on generated samples.

    kind "non_saturating": -mean log D(G(z))  (the one used in practice);
         "saturating":     mean log(1 - D(G(z))), the minimax game's own term.
    Returns (loss, d_fake_logits).
    """
    if kind == "non_saturating":
        return binary_cross_entropy_with_logits(fake_logits, np.ones_like(fake_logits))
    if kind == "saturating":
        loss, d_fake = binary_cross_entropy_with_logits(fake_logits, np.zeros_like(fake_logits))
        return -loss, -d_fake
    raise ValueError(f"unknown generator loss {kind!r}; choose one of {GENERATOR_LOSSES}")


def minibatch_std_forward(x, eps=1e-8):
    """Append the batch's mean standard deviation m = mean_j std_n(x[n, j]) as one more column.

    x (N, D) -> out (N, D + 1), every row's last entry equal to m; cache for minibatch_std_backward.
    """
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"minibatch_std_forward: x must have shape (N, D) with N >= 2, got {x.shape}")
    mean = x.mean(axis=0)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0) + eps)
    column = np.full((len(x), 1), std.mean(), dtype=x.dtype)
    return np.concatenate([x, column], axis=1), (x, mean, std)


def minibatch_std_backward(dout, cache):
    """dout (N, D + 1) -> dx (N, D): the direct part plus the part through the shared column."""
    x, mean, std = cache
    n, d = x.shape
    g = dout[:, -1].sum()                       # every row's copy of m receives a gradient
    return dout[:, :-1] + g * (x - mean) / (n * d * std)


class NumpyGAN:
    """A GAN of two chapter-4 MLPs: generator G z (N, z_dim) -> x (N, data_dim), discriminator D x -> logit (N,).

    Both: `depth` hidden layers of `hidden` units, the given activation, a linear output; optimizers update
    G.params and D.params. minibatch_std=True gives D the batch's mean std as one more input (minibatch_std_forward).
    """

    def __init__(self, z_dim=2, data_dim=2, hidden=64, depth=2, activation="relu", minibatch_std=False,
                 seed=0, dtype=np.float32):
        self.z_dim, self.data_dim, self.activation, self.minibatch_std = z_dim, data_dim, activation, bool(minibatch_std)
        self.G = MLP([z_dim] + [hidden] * depth + [data_dim], activation, output="linear", seed=seed, dtype=dtype)
        self.D = MLP([data_dim + self.minibatch_std] + [hidden] * depth + [1], activation, output="linear",
                     seed=seed + 1, dtype=dtype)

    def _check(self, a, width, name):
        a = np.asarray(a, dtype=self.G.dtype)
        if a.ndim != 2 or a.shape[1] != width:
            raise ValueError(f"NumpyGAN: {name} must have shape (N, {width}), got {a.shape}")
        return a

    def generate(self, z):
        """Generated samples (N, data_dim) for noise z (N, z_dim)."""
        return self.G(self._check(z, self.z_dim, "z"))

    def _discriminate(self, x):                 # [minibatch std ->] D: the logits s (N,) and the cache
        x, std_cache = minibatch_std_forward(x) if self.minibatch_std else (x, None)
        logits, d_cache = self.D.forward(x)
        return logits[:, 0], (d_cache, std_cache)

    def _discriminator_backward(self, d_logits, cache):     # d_logits (N,) -> (dL/dx, grads of D.params)
        d_cache, std_cache = cache
        grads = self.D.backward(d_logits[:, None], d_cache)
        dx = grads.pop("x")                       # the input gradient: what the generator is trained through
        return (dx if std_cache is None else minibatch_std_backward(dx, std_cache)), grads

    def discriminate(self, x):
        """The discriminator's logits s (N,) for samples x (N, data_dim); D(x) = sigmoid(s)."""
        return self._discriminate(self._check(x, self.data_dim, "x"))[0]

    def discriminator_loss(self, x_real, z):
        """Loss of the discriminator on real x_real and on G(z) (held fixed), and its gradients w.r.t. D."""
        return self.discriminator_loss_on_samples(x_real, self.generate(z))

    def discriminator_loss_on_samples(self, x_real, x_fake):
        """The same for given fake samples x_fake (N', data_dim), from any source."""
        real_logits, real_cache = self._discriminate(self._check(x_real, self.data_dim, "x_real"))
        fake_logits, fake_cache = self._discriminate(self._check(x_fake, self.data_dim, "x_fake"))
        loss, d_real, d_fake = discriminator_loss(real_logits, fake_logits)
        real_grads = self._discriminator_backward(d_real, real_cache)[1]
        fake_grads = self._discriminator_backward(d_fake, fake_cache)[1]
        return loss, {k: real_grads[k] + fake_grads[k] for k in real_grads}

    def generator_loss(self, z, kind="non_saturating"):
        """Loss of the generator on noise z and its gradients w.r.t. G, back-propagated through D."""
        x_fake, g_cache = self.G.forward(self._check(z, self.z_dim, "z"))
        fake_logits, d_cache = self._discriminate(x_fake)
        loss, d_logits = generator_loss(fake_logits, kind)
        dx_fake, _ = self._discriminator_backward(d_logits, d_cache)     # D's own gradients are not used here
        return loss, {k: g for k, g in self.G.backward(dx_fake, g_cache).items() if k != "x"}   # G.params only


def gan_train_step(gan, x_real, z_d, z_g, d_optimizer, g_optimizer, kind="non_saturating"):
    """One alternating step: the discriminator on (x_real, G(z_d)), then the generator on z_g.

    The optimizers are chapter 7's (step(params, grads)). Returns (d_loss, g_loss).
    """
    d_loss, d_grads = gan.discriminator_loss(x_real, z_d)
    d_optimizer.step(gan.D.params, d_grads)
    g_loss, g_grads = gan.generator_loss(z_g, kind)
    g_optimizer.step(gan.G.params, g_grads)
    return d_loss, g_loss
