"""PyTorch code taught in notebooks/13c_diffusion.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np
import torch
import torch.nn.functional as F


def shrink_digits(images, size):
    """(N, 1, 28, 28) images -> (N, 1, size, size) float32 arrays: means of pixel blocks (size 14: of 2 x 2 blocks)."""
    return F.adaptive_avg_pool2d(torch.as_tensor(np.asarray(images, dtype=np.float32)), size).numpy()


def enlarge_digits(images, size=28):
    """Generated (N, 1, s, s) images in [0, 1] -> (N, 1, size, size) arrays for the 28 x 28 judge (bicubic)."""
    images = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if images.shape[-1] == size:
        return images.numpy()
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False).clamp(0, 1).numpy()


import torch
import torch.nn.functional as F
from torch import nn

from nndl_helpers.chapters.ch08a import sinusoidal_positional_encoding


class ResidualBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, plus a per-channel bias from the time embedding, twice; a skip connection."""

    def __init__(self, c_in, c_out, emb_dim, groups=8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(groups, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(groups, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)[:, :, None, None]
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)


class TinyUNet(nn.Module):
    """eps_theta(x_t, t) for (N, 1, size, size) images: a U-Net with levels size, size/2 and size/4 wide
    (28, 14, 7; or 14, 7, 4). Each decoder level upsamples (nearest neighbour) to its skip's size, then convolves.
    channels  (c1, c2, c3), the widths of the three levels; T  the number of diffusion steps.
    forward(x, t) takes integer steps t (N,) in 0..T.
    """

    def __init__(self, channels=(16, 32, 64), T=1000, emb_dim=64, size=28):
        super().__init__()
        c1, c2, c3 = channels
        self.T, self.emb_dim, self.size = int(T), int(emb_dim), int(size)
        # chapter 8a's sinusoidal codes of t = 0..T (base 10 T, as in DenoiserMLP), looked up on the device
        codes = sinusoidal_positional_encoding(self.T + 1, self.emb_dim, base=10.0 * self.T)
        self.register_buffer("time_codes", torch.from_numpy(codes).float(), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(1, c1, 3, padding=1)
        self.enc1 = ResidualBlock(c1, c1, emb_dim)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)          # 28 -> 14
        self.enc2 = ResidualBlock(c2, c2, emb_dim)
        self.down2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)          # 14 -> 7
        self.middle = ResidualBlock(c3, c3, emb_dim)
        self.up2 = nn.Conv2d(c3, c2, 3, padding=1)                      # after upsampling 7 -> 14
        self.dec2 = ResidualBlock(2 * c2, c2, emb_dim)                  # after the skip connection
        self.up1 = nn.Conv2d(c2, c1, 3, padding=1)                      # after upsampling 14 -> 28
        self.dec1 = ResidualBlock(2 * c1, c1, emb_dim)
        self.head = nn.Sequential(nn.GroupNorm(min(8, c1), c1), nn.SiLU(), nn.Conv2d(c1, 1, 3, padding=1))

    def forward(self, x, t):
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, self.size, self.size):
            raise ValueError(f"TinyUNet expects images of shape (N, 1, {self.size}, {self.size}), got {tuple(x.shape)}")
        emb = self.time_mlp(self.time_codes[t])                          # t: integer steps 0..T
        h1 = self.enc1(self.stem(x), emb)
        h2 = self.enc2(self.down1(h1), emb)
        h = self.middle(self.down2(h2), emb)
        h = self.dec2(torch.cat([self.up2(F.interpolate(h, size=h2.shape[-2:])), h2], dim=1), emb)
        h = self.dec1(torch.cat([self.up1(F.interpolate(h, size=h1.shape[-2:])), h1], dim=1), emb)
        return self.head(h)


import copy

import torch
import torch.nn.functional as F

from nndl_helpers.chapters.ch07a import cosine_schedule
from nndl_helpers.config import autocast, grad_scaler       # reduced precision by the GPU's generation


def train_ddpm(model, X, schedule, *, steps, batch_size=128, lr=1e-3, device="cpu", seed=0,
               ema_decay=None, min_snr_gamma=None, on_step=None):
    """Train `model` (eps_theta(x, t) on tensors) in place with L_simple and AdamW with a cosine decay.

    X  (N, ...) float32 data of unit scale (images in [-1, 1]), moved to `device` once.
    min_snr_gamma  if given, weight each image's loss by min(SNR_t, gamma) / SNR_t (Hang et al., 2023), where
               SNR_t = alpha_bar_t / (1 - alpha_bar_t): the nearly clean, easy steps count less; None is L_simple.
    ema_decay  if given, also keep an exponential moving average of the weights, the usual choice for sampling.
    On CUDA: reduced precision (`autocast`, a gradient scaler where that is float16) and the channels-last layout.
    on_step(step, loss) is called after every step; loss is a 0-d tensor on `device` (float(loss) waits
               for the device, so read it only every few steps).
    Returns (losses, sampler model): the EMA copy if ema_decay is given, else `model`; both in eval mode.
    """
    device = torch.device(device)
    X = torch.as_tensor(X, dtype=torch.float32).to(device)
    model.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval() if ema_decay else None
    alpha_bars = torch.tensor(schedule.alpha_bars, dtype=torch.float32, device=device)
    snr = alpha_bars / (1 - alpha_bars)
    step_weights = snr.clamp(max=min_snr_gamma) / snr if min_snr_gamma else torch.ones_like(snr)
    gen = torch.Generator(device=device).manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    lr_at = cosine_schedule(lr, steps, lr * 0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step) / lr)
    scaler = grad_scaler(device)
    losses = torch.zeros(int(steps), device=device)       # read once, at the end
    for step in range(int(steps)):
        x0 = X[torch.randint(0, len(X), (batch_size,), generator=gen, device=device)]
        t = torch.randint(1, schedule.T + 1, (batch_size,), generator=gen, device=device)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        a_bar = alpha_bars[t - 1].view(-1, *([1] * (x0.ndim - 1)))
        x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * eps
        with autocast(device):
            per_image = (model(x_t, t).float() - eps).pow(2).flatten(1).mean(1)
        loss = (step_weights[t - 1] * per_image).mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:   # ema <- ema + (1 - decay) (weights - ema), every tensor in one call
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - ema_decay)
        losses[step] = loss.detach()
        if on_step is not None:
            on_step(step, losses[step])
    model.eval()
    return losses.tolist(), (ema if ema is not None else model)


def torch_eps_predictor(model, device="cpu"):
    """Wrap a network model(x, t_tensor) as predict_eps(x, t_int) for ddpm_sample / ddim_sample (no gradients)."""
    device = torch.device(device)

    @torch.no_grad()
    def predict_eps(x, t):
        with autocast(device):      # reduced precision on CUDA, as in training
            return model(x, torch.full((len(x),), t, device=x.device, dtype=torch.long)).float()
    return predict_eps
