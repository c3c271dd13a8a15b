"""PyTorch code taught in notebooks/16b_segmentation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from nndl_helpers.chapters.ch05a import check_images
from nndl_helpers.chapters.ch07a import cosine_schedule
from nndl_helpers.config import autocast, grad_scaler       # reduced precision by the GPU's generation


def conv_bn_relu(c_in, c_out):
    """3x3 convolution (padding 1; no bias, BatchNorm's shift replaces it) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """A small U-Net: per-pixel class scores (N, num_classes, H, W) for images (N, in_channels, H, W).

    widths (w0, w1, ..., wL): a stem conv at full resolution (w0); L encoder levels, each a 2x2 max-pool
    and two convs (w_l); L decoder levels, each a stride-2 2x2 transposed convolution (w_l -> w_{l-1}),
    concatenation with the encoder's map of the same size (the skip connection) and one conv; then a
    1x1 conv to num_classes scores. H and W must be multiples of 2^L.
    deep_supervision: also a 1x1 conv on the bottleneck (the deepest map); forward(x, with_aux=True)
    then returns (scores, aux_scores), the bottleneck's scores bilinearly upsampled to (H, W).
    class_prior (num_classes,) positive shares or None: the heads' biases start at log(class_prior).
    """

    def __init__(self, widths=(8, 16, 32, 64), num_classes=11, in_channels=1, deep_supervision=False,
                 class_prior=None):
        super().__init__()
        w = [int(v) for v in widths]
        if len(w) < 2 or min(w) < 1:
            raise ValueError(f"UNet: widths must be at least two positive ints, got {widths!r}")
        self.levels, self.in_channels, self.num_classes = len(w) - 1, int(in_channels), int(num_classes)
        self.stem = conv_bn_relu(in_channels, w[0])
        self.down = nn.ModuleList(nn.Sequential(conv_bn_relu(w[i], w[i + 1]), conv_bn_relu(w[i + 1], w[i + 1]))
                                  for i in range(self.levels))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(self.levels))
        self.merge = nn.ModuleList(conv_bn_relu(2 * w[i], w[i]) for i in range(self.levels))
        self.head = nn.Conv2d(w[0], num_classes, 1)
        self.aux_head = nn.Conv2d(w[-1], num_classes, 1) if deep_supervision else None
        if class_prior is not None:                      # start from each class's share of the pixels
            prior = np.asarray(class_prior, dtype=np.float64)
            if prior.shape != (num_classes,) or not np.all(prior > 0):
                raise ValueError(f"UNet: class_prior must be {num_classes} positive shares, got {class_prior!r}")
            with torch.no_grad():
                for head in filter(None, (self.head, self.aux_head)):
                    head.bias.copy_(torch.as_tensor(np.log(prior / prior.sum()), dtype=torch.float32))

    def forward(self, x, with_aux=False):
        check_images(x, "UNet: x", channels=self.in_channels)
        if x.shape[2] % 2 ** self.levels or x.shape[3] % 2 ** self.levels:
            raise ValueError(f"UNet: height and width must be multiples of 2^{self.levels} = {2 ** self.levels}, "
                             f"got x.shape={tuple(x.shape)}")
        skips = [self.stem(x)]
        for level in self.down:
            skips.append(level(F.max_pool2d(skips[-1], 2)))
        if with_aux and self.aux_head is None:
            raise ValueError("UNet: with_aux=True needs a model built with deep_supervision=True")
        h = skips.pop()
        if with_aux:                                     # the bottleneck's own per-pixel scores
            aux = F.interpolate(self.aux_head(h), size=x.shape[2:], mode="bilinear", align_corners=False)
        for i in reversed(range(self.levels)):           # deepest level first
            h = self.merge[i](torch.cat([self.up[i](h), skips.pop()], dim=1))
        return (self.head(h), aux) if with_aux else self.head(h)


def train_segmenter(model, X, masks, *, epochs, batch_size=16, lr=3e-3, hold=0.6, class_weights=None,
                    aux_weight=0.0, device="cpu", seed=0, on_step=None):
    """Train `model` (images -> per-pixel scores) in place with (class-weighted) cross-entropy and Adam.

    X  (N, C, H, W) float32 images and masks (N, H, W) int64 labels, NumPy or tensors, moved to `device`
       once; class_weights (num_classes,) or None. The learning rate stays at lr for the first `hold`
       share of the steps, then falls to 0 on chapter 7a's cosine schedule.
    aux_weight > 0: deep supervision, + aux_weight x the same loss on model(x, with_aux=True)'s aux scores.
    On CUDA: channels-last layout and nh.autocast (with a gradient scaler where that is float16).
    on_step(step, loss) after every step; loss is a 0-d tensor on `device` (read it only every few steps).
    Returns the list of per-step losses; the model is left in eval mode on `device`.
    """
    if int(epochs) != epochs or epochs < 0 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"train_segmenter: epochs must be an integer >= 0 and batch_size an integer >= 1, "
                         f"got epochs={epochs!r}, batch_size={batch_size!r}")
    device = torch.device(device)
    X = torch.as_tensor(check_images(X, "train_segmenter: X"), dtype=torch.float32).to(device)
    masks = torch.as_tensor(masks).to(device)
    if masks.shape != (X.shape[0], *X.shape[2:]) or masks.dtype != torch.int64:
        raise ValueError(f"train_segmenter: masks must be int64 labels of shape {(X.shape[0], *X.shape[2:])}, "
                         f"got {tuple(masks.shape)} {masks.dtype}")
    model.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32, device=device)
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    steps = int(epochs) * math.ceil(len(X) / int(batch_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    held = int(hold * steps)
    decay = cosine_schedule(lr, max(steps - held, 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step < held else decay(step - held) / lr)
    scaler = grad_scaler(device)
    losses, step = torch.zeros(steps, device=device), 0      # read once, at the end
    for _ in range(int(epochs)):
        order = torch.randperm(len(X), generator=shuffle).to(device)
        for start in range(0, len(X), int(batch_size)):
            idx = order[start:start + int(batch_size)]
            with autocast(device):
                if aux_weight:
                    scores, aux = model(X[idx], with_aux=True)
                    loss = F.cross_entropy(scores.float(), masks[idx], weight=weight) \
                        + aux_weight * F.cross_entropy(aux.float(), masks[idx], weight=weight)
                else:
                    loss = F.cross_entropy(model(X[idx]).float(), masks[idx], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses[step] = loss.detach()
            if on_step is not None:
                on_step(step, losses[step])
            step += 1
    model.eval()
    return losses.tolist()


@torch.no_grad()
def predict_masks(model, X, *, batch_size=250, device="cpu"):
    """Predicted labels (N, H, W) int64 (argmax over classes) and class probabilities (N, K, H, W) float32, NumPy."""
    device = torch.device(device)
    X = torch.as_tensor(check_images(X, "predict_masks: X"), dtype=torch.float32)
    model.to(device).eval()
    probs = []
    for start in range(0, len(X), batch_size):
        with autocast(device):
            scores = model(X[start:start + batch_size].to(device))
        probs.append(torch.softmax(scores.float(), dim=1).cpu())
    probs = torch.cat(probs).numpy()
    return probs.argmax(axis=1).astype(np.int64), probs
