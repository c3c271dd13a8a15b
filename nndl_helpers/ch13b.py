"""Code taught in notebooks/13b_gan.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.ch03 import binary_cross_entropy_with_logits
from nndl_helpers.ch04 import ACTIVATIONS, MLP, affine_backward, affine_forward


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


def mlp_forward(params, x, activation="relu"):
    """Forward pass of an MLP [affine -> activation] * (L - 1) -> affine.

    params: dict W1, b1, ..., WL, bL (e.g. chapter 4's MLP(...).params); x (N, D_in).
    Returns: out (N, D_out) and the caches for mlp_backward.
    """
    act_forward = ACTIVATIONS[activation][0]
    num_layers = len(params) // 2
    a, caches = x, []
    for l in range(1, num_layers + 1):
        z, affine_cache = affine_forward(a, params[f"W{l}"], params[f"b{l}"])
        act_cache = None
        if l < num_layers:
            a, act_cache = act_forward(z)
        caches.append((affine_cache, act_cache))
    return z, caches


def mlp_backward(dout, caches, activation="relu", need_param_grads=True):
    """Backward pass of mlp_forward for an upstream gradient dout (N, D_out).

    Returns (dx, grads): dx (N, D_in), the gradient w.r.t. the input, and grads, a dict like params
    (empty if need_param_grads is False: the generator's step needs only dx from the discriminator).
    """
    act_backward = ACTIVATIONS[activation][1]
    grads, dz = {}, dout
    for l in range(len(caches), 0, -1):
        affine_cache, act_cache = caches[l - 1]
        if l < len(caches):
            dz = act_backward(da, act_cache)
        da, dW, db = affine_backward(dz, affine_cache)
        if need_param_grads:
            grads[f"W{l}"], grads[f"b{l}"] = dW, db
    return da, grads


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
    """A GAN of two MLPs in NumPy: generator z (N, z_dim) -> x (N, data_dim), discriminator x -> logit (N,).

    Both have `depth` hidden layers of `hidden` units with the given activation (a key of chapter 4's
    ACTIVATIONS). minibatch_std=True feeds the discriminator the batch's mean standard deviation as
    one more input (minibatch_std_forward). G and D are parameter dicts W1, b1, ...; optimizers
    update them in place.
    """

    def __init__(self, z_dim=2, data_dim=2, hidden=64, depth=2, activation="relu", minibatch_std=False,
                 seed=0, dtype=np.float32):
        self.z_dim, self.data_dim, self.activation = z_dim, data_dim, activation
        self.minibatch_std, self.dtype = bool(minibatch_std), np.dtype(dtype)
        self.G = MLP([z_dim] + [hidden] * depth + [data_dim], activation, output="linear",
                     seed=seed, dtype=dtype).params
        self.D = MLP([data_dim + self.minibatch_std] + [hidden] * depth + [1], activation, output="linear",
                     seed=seed + 1, dtype=dtype).params

    def _check(self, a, width, name):
        a = np.asarray(a, dtype=self.dtype)
        if a.ndim != 2 or a.shape[1] != width:
            raise ValueError(f"NumpyGAN: {name} must have shape (N, {width}), got {a.shape}")
        return a

    def generate(self, z):
        """Generated samples (N, data_dim) for noise z (N, z_dim)."""
        return mlp_forward(self.G, self._check(z, self.z_dim, "z"), self.activation)[0]

    def _discriminate(self, x):
        std_cache = None
        if self.minibatch_std:
            x, std_cache = minibatch_std_forward(x)
        logits, caches = mlp_forward(self.D, x, self.activation)
        return logits[:, 0], (caches, std_cache)

    def _discriminator_backward(self, d_logits, cache, need_param_grads=True):
        caches, std_cache = cache
        dx, grads = mlp_backward(d_logits[:, None], caches, self.activation, need_param_grads)
        if std_cache is not None:
            dx = minibatch_std_backward(dx, std_cache)
        return dx, grads

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
        grads = self._discriminator_backward(d_real, real_cache)[1]
        for k, g in self._discriminator_backward(d_fake, fake_cache)[1].items():
            grads[k] += g
        return loss, grads

    def generator_loss(self, z, kind="non_saturating"):
        """Loss of the generator on noise z and its gradients w.r.t. G, back-propagated through D."""
        x_fake, g_caches = mlp_forward(self.G, self._check(z, self.z_dim, "z"), self.activation)
        fake_logits, d_cache = self._discriminate(x_fake)
        loss, d_logits = generator_loss(fake_logits, kind)
        dx_fake, _ = self._discriminator_backward(d_logits, d_cache, need_param_grads=False)
        return loss, mlp_backward(dx_fake, g_caches, self.activation)[1]


def gan_train_step(gan, x_real, z_d, z_g, d_optimizer, g_optimizer, kind="non_saturating"):
    """One alternating step: the discriminator on (x_real, G(z_d)), then the generator on z_g.

    The optimizers are chapter 7's (step(params, grads)). Returns (d_loss, g_loss).
    """
    d_loss, d_grads = gan.discriminator_loss(x_real, z_d)
    d_optimizer.step(gan.D, d_grads)
    g_loss, g_grads = gan.generator_loss(z_g, kind)
    g_optimizer.step(gan.G, g_grads)
    return d_loss, g_loss


import torch
from torch import nn


def dcgan_generator(z_dim=100, channels=64):
    """DCGAN generator: z (N, z_dim) -> images (N, 1, 28, 28) in [0, 1].

    Linear -> (2c, 7, 7) -> transposed conv to (c, 14, 14) -> transposed conv to (1, 28, 28).
    """
    c = channels
    return nn.Sequential(
        nn.Linear(z_dim, 2 * c * 7 * 7), nn.Unflatten(1, (2 * c, 7, 7)), nn.BatchNorm2d(2 * c), nn.ReLU(),
        nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
        nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), nn.Sigmoid())


def dcgan_discriminator(channels=64):
    """DCGAN discriminator: images (N, 1, 28, 28) -> logits (N, 1); strided convs, LeakyReLU, no pooling."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * c * 7 * 7, 1))


import torch.nn.functional as F
from tqdm.auto import tqdm

from nndl_helpers.ch05 import lenet5_torch


def _digit_batch(images, caller):
    """images as a float32 tensor (N, 1, 28, 28), or a ValueError naming the caller."""
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28) or len(images) == 0:
        raise ValueError(f"{caller}: images must have shape (N, 1, 28, 28) with N >= 1, got {tuple(images.shape)}")
    return images


def train_digit_judge(images, labels, *, epochs=1, batch_size=32, lr=3e-3, seed=0, device=None):
    """Train the chapter-5 LeNet-5 on labelled digits, to judge generated ones with `score_generated`.

    images: (N, 1, 28, 28) in [0, 1], a tensor or an array; labels: (N,) classes 0..9.
    Adam on the cross-entropy, mini-batches in a new order every epoch. Everything random is
    drawn from `seed`, so the same call gives the same judge, and the caller's random state is
    left alone. Trains on `device` (default: where `images` are); returns the network in eval mode.
    """
    images = _digit_batch(images, "train_digit_judge")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (len(images),) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"train_digit_judge: need one label in 0..9 per image, got labels of shape "
                         f"{tuple(labels.shape)} for {len(images)} images")
    device = images.device if device is None else torch.device(device)
    images, labels = images.to(device), labels.to(device)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier = lenet5_torch().to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(seed)
    batch_starts = range(0, len(images), batch_size)
    with tqdm(total=epochs * len(batch_starts), desc="LeNet-5 judge", mininterval=1.0) as progress:
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=order_gen).to(device)
            for i in batch_starts:
                batch = order[i:i + batch_size]
                loss = F.cross_entropy(classifier(images[batch]), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                progress.update()
    return classifier.eval()


def class_probabilities(classifier, images, batch_size=500):
    """Softmax probabilities (N, num_classes), on the CPU, of `classifier` for images (N, 1, 28, 28)."""
    images = _digit_batch(images, "class_probabilities")
    weights = next(classifier.parameters(), None)
    device = images.device if weights is None else weights.device
    classifier.eval()
    with torch.no_grad():
        return torch.cat([torch.softmax(classifier(images[i:i + batch_size].to(device)).float(), dim=1).cpu()
                          for i in range(0, len(images), batch_size)])


def score_generated(classifier, images, confidence=0.9, num_classes=10, batch_size=500):
    """Judge generated images (N, 1, 28, 28) in [0, 1] with a trained classifier (`train_digit_judge`).

    Returns a dict:
    "confident": share of the images whose top class probability exceeds `confidence`;
    "classes": how many classes occur among those confident predictions;
    "entropy": entropy (nats) of the histogram of all predicted classes (log 10 = 2.303 is balanced);
    "histogram": predicted-class counts over all images (num_classes,);
    "confident_histogram": predicted-class counts over the confident images only (num_classes,).
    """
    images = _digit_batch(images, "score_generated")
    probs = class_probabilities(classifier, images, batch_size)
    if probs.shape[1] != num_classes:
        raise ValueError(f"score_generated: the classifier gives {probs.shape[1]} classes, expected {num_classes}")
    top_p, predicted = probs.max(dim=1)
    confident = top_p > confidence
    histogram = torch.bincount(predicted, minlength=num_classes).double()
    share = histogram / histogram.sum()
    entropy = float(-(share[share > 0] * share[share > 0].log()).sum()) + 0.0   # + 0.0 turns -0.0 into 0.0
    confident_histogram = torch.bincount(predicted[confident], minlength=num_classes)
    return {"confident": float(confident.double().mean()), "classes": int((confident_histogram > 0).sum()),
            "entropy": entropy, "histogram": histogram.long().numpy(),
            "confident_histogram": confident_histogram.numpy()}
