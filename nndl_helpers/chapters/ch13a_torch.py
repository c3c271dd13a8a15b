"""PyTorch code taught in notebooks/13a_vae.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from nndl_helpers.chapters.ch05a import check_images

IMAGE_SHAPE = (1, 28, 28)   # what the PyTorch VAE reads and writes: one channel of 28 x 28 pixels


class VAE(nn.Module):
    """Variational autoencoder with a Gaussian encoder and a Bernoulli decoder (Kingma & Welling, 2014).

    encoder  q(z | x) = N(mu, diag(exp(logvar))):  x (N, 1, 28, 28) -> 784 -> hidden (x depth) -> 2 * latent_dim
    decoder  p(x | z) = Bernoulli(sigmoid(logits)): z (N, latent_dim) -> hidden (x depth) -> 784 logits
    prior    p(z) = N(0, I)

    latent_dim  size of z (2 lets us draw the latent space; 8-32 gives better samples and ELBO).
    hidden      width of the hidden layers; depth  number of hidden layers in each of the two MLPs.
    """

    def __init__(self, latent_dim=2, hidden=400, depth=1):
        super().__init__()
        if latent_dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"latent_dim, hidden and depth must be >= 1, got {latent_dim}, {hidden}, {depth}")
        self.latent_dim, self.hidden, self.depth = int(latent_dim), int(hidden), int(depth)
        d = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]

        def mlp(sizes):
            layers = []
            for m_in, m_out in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(m_in, m_out), nn.ReLU()]
            return layers[:-1]   # no activation after the last layer

        self.encoder = nn.Sequential(*mlp([d] + [hidden] * depth + [2 * latent_dim]))
        self.decoder = nn.Sequential(*mlp([latent_dim] + [hidden] * depth + [d]))

    def encode(self, x):
        """x (N, 1, 28, 28) in [0, 1] -> (mu, logvar), each (N, latent_dim): the parameters of q(z | x)."""
        check_images(x, "VAE.encode: x", channels=IMAGE_SHAPE[0], size=IMAGE_SHAPE[1:])
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        """z (N, latent_dim) -> Bernoulli logits (N, 1, 28, 28); sigmoid(logits) is the mean image."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"VAE.decode: expected z of shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z).view(-1, *IMAGE_SHAPE)

    def forward(self, x):
        """x -> (logits, mu, logvar), with one z ~ q(z | x) drawn by the reparameterization trick."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


def reparameterize(mu, logvar):
    """z = mu + sigma * eps, eps ~ N(0, I): a sample of N(mu, sigma^2) that gradients flow through."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def vae_loss_terms(logits, x, mu, logvar):
    """The two terms of the negative ELBO, in nats per image (averaged over the batch).

    reconstruction  -log p(x | z) = sum over pixels of the binary cross-entropy of x under sigmoid(logits)
    kl              KL(q(z | x) || N(0, I)) = 1/2 sum_k (mu_k^2 + sigma_k^2 - 1 - log sigma_k^2)
    """
    n = x.shape[0]
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    kl = 0.5 * torch.sum(mu * mu + logvar.exp() - 1.0 - logvar) / n
    return reconstruction, kl


def vae_loss(logits, x, mu, logvar):
    """Negative ELBO in nats per image, averaged over the batch (a scalar tensor to minimise)."""
    reconstruction, kl = vae_loss_terms(logits, x, mu, logvar)
    return reconstruction + kl


def as_image_tensor(X, name="X"):
    """A float32 tensor (N, 1, 28, 28) from a NumPy array or tensor; ValueError for wrong shapes or values."""
    X = torch.as_tensor(X).float()
    return check_images(X, name, channels=IMAGE_SHAPE[0], size=IMAGE_SHAPE[1:], value_range=(0.0, 1.0))


def train_vae(model, X, *, epochs, batch_size=128, lr=1e-3, device="cpu", seed=0, on_step=None):
    """Train `model` (a VAE) in place with Adam on the negative ELBO.

    X        float32 NumPy array or tensor (N, 1, 28, 28) in [0, 1]; moved to `device` once.
    on_step  optional callback on_step(step, loss) after every step (step counts from 0); loss is a 0-d
             tensor on `device`, and float(loss) waits for the device, so read it only every few steps.
    Returns the list of per-step losses (negative ELBO of each mini-batch, nats per image).
    The model stays on `device`, in eval mode. Seeds torch's global generator with `seed` (the noise eps).
    """
    if int(epochs) != epochs or epochs < 0 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"train_vae: epochs must be an integer >= 0 and batch_size an integer >= 1, "
                         f"got epochs={epochs!r}, batch_size={batch_size!r}")
    device = torch.device(device)
    X = as_image_tensor(X).to(device)
    model.to(device).train()
    torch.manual_seed(seed)                          # the eps of the reparameterization trick
    shuffle = torch.Generator().manual_seed(seed)    # the order of the mini-batches
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = torch.zeros(int(epochs) * math.ceil(len(X) / int(batch_size)), device=device)   # read once, at the end
    step = 0
    for _ in range(int(epochs)):
        order = torch.randperm(len(X), generator=shuffle).to(device)
        for start in range(0, len(X), int(batch_size)):
            x = X[order[start:start + int(batch_size)]]
            logits, mu, logvar = model(x)          # float32 on a GPU too: small MLPs are launch-bound
            loss = vae_loss(logits, x, mu, logvar)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            if on_step is not None:
                on_step(step, losses[step])
            step += 1
    model.eval()
    return losses.tolist()


@torch.no_grad()
def evaluate_vae(model, X, *, batch_size=1000, device="cpu", seed=0):
    """Mean negative ELBO (nats per image) of `model` on the images X, one z ~ q(z | x) per image.

    The noise comes from `seed` inside a forked random state, so evaluating does not disturb training.
    Returns (negative ELBO, reconstruction term, KL term), floats averaged over all of X.
    """
    device = torch.device(device)
    X = as_image_tensor(X)
    was_training = model.training
    model.to(device).eval()
    totals = torch.zeros(2, dtype=torch.float64)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(X), batch_size):
            x = X[start:start + batch_size].to(device)
            logits, mu, logvar = model(x)
            reconstruction, kl = vae_loss_terms(logits, x, mu, logvar)
            totals += torch.stack([reconstruction, kl]).cpu().double() * len(x)   # float64 on the CPU: MPS has none
    model.train(was_training)
    reconstruction, kl = (totals / len(X)).tolist()
    return reconstruction + kl, reconstruction, kl


@torch.no_grad()
def importance_log_likelihood(model, X, *, samples=64, batch_size=100, device="cpu", seed=0):
    """Estimate of the mean log p(x) in nats with `samples` importance samples from q(z | x) per image:

        log p(x) >= log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s | x),   z_s ~ q(z | x)

    a bound that is, in expectation, never below the ELBO (S = 1) and tightens towards log p(x) as S grows.
    """
    device = torch.device(device)
    X = as_image_tensor(X)
    model.to(device).eval()
    log_2pi = math.log(2 * math.pi)
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(X), batch_size):
            x = X[start:start + batch_size].to(device)
            mu, logvar = model.encode(x)
            eps = torch.randn(samples, *mu.shape, device=device)
            z = mu + torch.exp(0.5 * logvar) * eps                                   # (S, n, K)
            logits = model.decode(z.flatten(0, 1)).view(samples, len(x), -1)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, x.flatten(1).expand(samples, -1, -1), reduction="none").sum(-1)
            log_pz = -0.5 * (z * z + log_2pi).sum(-1)
            log_qz = -0.5 * (eps * eps + logvar + log_2pi).sum(-1)
            log_w = (log_px_z + log_pz - log_qz).cpu().double()   # float64 on the CPU: MPS has none
            total += float((torch.logsumexp(log_w, dim=0) - math.log(samples)).sum())
    return total / len(X)
