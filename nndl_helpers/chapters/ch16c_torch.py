"""PyTorch code taught in notebooks/16c_detection.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np
import torch
from torch import nn


class TinySSD(nn.Module):
    """A single-shot detector for small canvases: a CNN backbone and two 3x3 convolutional heads.

    x (N, 1, S, S) -> backbone (four conv-BN-ReLU stages, the first two with stride 2: stride 4 in all)
      -> feature map (N, width, S/4, S/4) -> per cell and anchor a:
        class logits (N, H * W * A, num_classes)   one sigmoid per class (no background class)
        box deltas   (N, H * W * A, 4)             offsets [dx, dy, dw, dh] to the anchor (encode_boxes)
    in the anchors' order (row, column, anchor), as make_anchors lays them out.
    """

    def __init__(self, num_anchors, num_classes=10, width=32, prior=0.01):
        super().__init__()
        self.num_anchors, self.num_classes = int(num_anchors), int(num_classes)

        def block(c_in, c_out, stride=1):
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.backbone = nn.Sequential(*block(1, width // 2, 2), *block(width // 2, width, 2),
                                      *block(width, width), *block(width, width))
        self.cls_head = nn.Conv2d(width, self.num_anchors * self.num_classes, 3, padding=1)
        self.box_head = nn.Conv2d(width, self.num_anchors * 4, 3, padding=1)
        nn.init.constant_(self.cls_head.bias, -np.log((1 - prior) / prior))   # start at p = prior: few false alarms
        nn.init.zeros_(self.box_head.bias)

    def forward(self, x):
        f = self.backbone(x)
        n = x.shape[0]
        cls = self.cls_head(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
        box = self.box_head(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return cls, box


def torch_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """focal_loss's formula with torch operations, summed (not yet normalised); targets in {0, 1}."""
    sign = 2 * targets - 1
    log_pt = -torch.nn.functional.softplus(-sign * logits)
    alpha_t = torch.where(targets == 1, alpha, 1 - alpha)
    return (-alpha_t * (1 - log_pt.exp()) ** gamma * log_pt).sum()


def torch_smooth_l1(pred, target, beta=1.0):
    """smooth_l1_loss's formula with torch operations, summed."""
    d = (pred - target).abs()
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta).sum()


def ssd_loss(cls_logits, box_deltas, cls_target, box_target, matches):
    """The detector's loss on a batch, divided by the number of positive anchors:
    focal loss over every anchor that is not ignored (matches != -2) + smooth L1 over the positives."""
    pos, valid = matches >= 0, matches != -2
    n_pos = pos.sum().clamp(min=1)
    cls_loss = torch_focal_loss(cls_logits[valid], cls_target[valid]) / n_pos
    box_loss = torch_smooth_l1(box_deltas[pos], box_target[pos]) / n_pos
    return cls_loss, box_loss


import math

from nndl_helpers.chapters.ch05a import check_images
from nndl_helpers.config import autocast, grad_scaler       # reduced precision by the GPU's generation


def train_detector(model, images, cls_target, box_target, matches, *, epochs, batch_size=64, lr=3e-3,
                   device="cpu", seed=0, on_step=None):
    """Train a TinySSD in place on ssd_loss with Adam and a one-cycle learning rate (warm up, then anneal).

    images (N, 1, S, S) in [0, 1]; cls_target (N, A, C), box_target (N, A, 4), matches (N, A): the
    detection_targets of every image, computed once. Everything moves to `device` once; mini-batches
    are indexed there. on_step(step, cls_loss, box_loss) gets 0-d tensors on the device.
    Returns the (steps, 2) tensor of per-step (class, box) losses, on the CPU. The model ends in eval mode.
    """
    if int(epochs) != epochs or epochs < 1 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"train_detector: epochs and batch_size must be integers >= 1, got {epochs!r}, {batch_size!r}")
    device = torch.device(device)
    X = check_images(torch.as_tensor(images), "images", channels=1).float().to(device)
    targets = [torch.as_tensor(t).to(device) for t in (cls_target, box_target, matches)]
    if any(len(t) != len(X) or t.shape[1] != targets[0].shape[1] for t in targets):
        raise ValueError(f"train_detector: targets {[tuple(t.shape) for t in targets]} must have one row per image ({len(X)})")
    cls_t, box_t, match_t = targets[0].float(), targets[1].float(), targets[2].long()
    if device.type == "cuda":
        model, X = model.to(memory_format=torch.channels_last), X.to(memory_format=torch.channels_last)
    model.to(device).train()
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(X) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=int(epochs) * steps_per_epoch)
    scaler = grad_scaler(device)
    losses = torch.zeros(int(epochs) * steps_per_epoch, 2, device=device)
    for step in range(len(losses)):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(X), generator=shuffle).to(device)
        idx = order[(step % steps_per_epoch) * batch_size:(step % steps_per_epoch + 1) * batch_size]
        with autocast(device):
            cls_logits, box_deltas = model(X[idx])
        cls_loss, box_loss = ssd_loss(cls_logits.float(), box_deltas.float(), cls_t[idx], box_t[idx], match_t[idx])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(cls_loss + box_loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        losses[step] = torch.stack([cls_loss.detach(), box_loss.detach()])
        if on_step is not None:
            on_step(step, losses[step, 0], losses[step, 1])
    model.eval()
    return losses.cpu()


@torch.no_grad()
def predict_detector(model, images, *, batch_size=500, device="cpu"):
    """The network's raw output for every image, as NumPy: class probabilities (N, A, C) (sigmoid of the
    logits) and box deltas (N, A, 4). Decoding and NMS are postprocess's job, per image."""
    device = torch.device(device)
    X = check_images(torch.as_tensor(images), "images", channels=1).float()
    model.to(device).eval()
    scores, deltas = [], []
    for start in range(0, len(X), batch_size):
        with autocast(device):
            cls_logits, box_deltas = model(X[start:start + batch_size].to(device))
        scores.append(torch.sigmoid(cls_logits.float()).cpu().numpy())
        deltas.append(box_deltas.float().cpu().numpy())
    return np.concatenate(scores), np.concatenate(deltas)
