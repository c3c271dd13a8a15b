"""PyTorch code taught in notebooks/13b_gan.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
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

from nndl_helpers.chapters.ch05a_torch import lenet5_torch
from nndl_helpers.chapters.ch13a_torch import as_image_tensor
from nndl_helpers.config import autocast, grad_scaler       # reduced precision by the GPU's generation


def train_digit_judge(images, labels, *, epochs=1, batch_size=32, lr=3e-3, seed=0, device=None):
    """Train the chapter-5 LeNet-5 on labelled digits, to judge generated ones with `score_generated`.

    images: (N, 1, 28, 28) in [0, 1], a tensor or an array; labels: (N,) classes 0..9.
    Adam on the cross-entropy, mini-batches in a new order every epoch. Everything random is
    drawn from `seed`, so the same call gives the same judge, and the caller's random state is
    left alone. Trains on `device` (default: where `images` are), on CUDA in reduced precision
    (`autocast`) and the channels-last layout; returns the network in eval mode.
    """
    images = as_image_tensor(images, "train_digit_judge: images")      # (N, 1, 28, 28) in [0, 1], float32
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (len(images),) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"train_digit_judge: need one label in 0..9 per image, got labels of shape "
                         f"{tuple(labels.shape)} for {len(images)} images")
    device = images.device if device is None else torch.device(device)
    images, labels = images.to(device), labels.to(device)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier = lenet5_torch().to(device)
    if device.type == "cuda":     # cuDNN's fastest layout (one-channel images need no conversion)
        classifier.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    scaler = grad_scaler(device)  # scales the loss only where autocast runs in float16
    order_gen = torch.Generator().manual_seed(seed)
    batch_starts = range(0, len(images), batch_size)
    with tqdm(total=epochs * len(batch_starts), desc="LeNet-5 judge", mininterval=1.0) as progress:
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=order_gen).to(device)
            for i in batch_starts:
                batch = order[i:i + batch_size]
                with autocast(device):
                    loss = F.cross_entropy(classifier(images[batch]), labels[batch])
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                progress.update()
    return classifier.eval()


def class_probabilities(classifier, images, batch_size=500):
    """Softmax probabilities (N, num_classes), on the CPU, of `classifier` for images (N, 1, 28, 28)."""
    images = as_image_tensor(images, "class_probabilities: images")
    weights = next(classifier.parameters(), None)
    device = images.device if weights is None else weights.device
    classifier.eval()
    with torch.no_grad(), autocast(device):       # reduced precision on CUDA, as in training
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
    images = as_image_tensor(images, "score_generated: images")
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


def train_dcgan(generator, discriminator, images, *, steps, batch_size, lr_g, lr_d, device, gen, lr_decay=False,
                on_step=None):
    """Train a DCGAN in place: each step one discriminator update on real images and `fake.detach()`, then one
    generator update with the non-saturating loss BCE(D(G(z)), 1). Adam with beta_1 = 0.5 for both players.

    images  (N, 1, 28, 28) tensor in [0, 1] on `device`; gen  the torch.Generator that draws batches and noise.
    lr_decay  if True, both learning rates fall linearly to 0 over the steps (for long runs); else constant.
    on_step(step, d_loss, g_loss) is called after every step (step counts from 1; losses are 0-d tensors).
    Both networks are left in training mode. On CUDA: reduced precision (`autocast`, gradient scalers where that
    is float16).
    """
    z_dim = generator[0].in_features          # dcgan_generator starts with its Linear(z_dim, ...)
    g_opt = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=(0.5, 0.999))
    g_scaler, d_scaler = grad_scaler(device), grad_scaler(device)   # loss scaling where autocast is float16
    ones = torch.ones(batch_size, 1, device=device)
    zeros = torch.zeros(batch_size, 1, device=device)
    generator.train(), discriminator.train()
    for step in range(1, steps + 1):
        if lr_decay:
            for opt, lr in ((g_opt, lr_g), (d_opt, lr_d)):
                opt.param_groups[0]["lr"] = lr * (1 - (step - 1) / steps)
        x_real = images[torch.randint(len(images), (batch_size,), generator=gen, device=device)]
        z = torch.randn(batch_size, z_dim, generator=gen, device=device)
        with autocast(device):
            fake = generator(z)
            d_loss = (F.binary_cross_entropy_with_logits(discriminator(x_real), ones)
                      + F.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros))
        d_opt.zero_grad()
        d_scaler.scale(d_loss).backward()
        d_scaler.step(d_opt)
        d_scaler.update()
        with autocast(device):
            g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), ones)     # non-saturating
        g_opt.zero_grad()
        g_scaler.scale(g_loss).backward()
        g_scaler.step(g_opt)
        g_scaler.update()
        if on_step is not None:
            on_step(step, d_loss.detach(), g_loss.detach())
