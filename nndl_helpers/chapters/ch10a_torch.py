"""PyTorch code taught in notebooks/10a_model_independent_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from nndl_helpers.chapters.ch05a_torch import lenet5_torch


def fit_classifier(net, X, y, *, steps, lr=2e-3, batch_size=64, params=None, seed=0):
    """Adam on the cross-entropy of `net` for `steps` mini-batches drawn with replacement from X, y (tensors on
    the net's device). params: the tensors to train (default: all; frozen layers are simply left out).
    Returns the losses of all steps, read from the device once at the end."""
    if len(X) != len(y) or len(X) == 0 or steps < 1:
        raise ValueError(f"need X and y of the same length >= 1 and steps >= 1, got {len(X)}, {len(y)}, {steps}")
    generator = torch.Generator().manual_seed(seed)
    batches = torch.randint(0, len(X), (steps, min(batch_size, len(X))), generator=generator).to(X.device)
    optimizer = torch.optim.Adam(list(net.parameters()) if params is None else list(params), lr=lr)
    net.train()
    losses = []
    for batch in batches:
        loss = F.cross_entropy(net(X[batch]), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).cpu().numpy()


def classifier_accuracy(net, X, y, batch_size=1_000):
    """Share of X (a tensor of images) that `net` classifies as y."""
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(X[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                      for i in range(0, len(X), batch_size))
    return correct / len(X)


TRANSFER_METHODS = ("frozen features + linear head", "fine-tune all layers", "from scratch")


def transfer_model(pretrained, method, n_classes, seed=0):
    """The target model for a transfer method: (network, the parameters to train). The pre-trained LeNet-5
    (an nn.Sequential from lenet5_torch) keeps its 400 convolutional features (layers up to the flatten);
    "frozen ..." trains a new linear layer on them, "fine-tune ..." trains all layers with a new output layer,
    "from scratch" trains a fresh LeNet-5 with a new output layer."""
    if method not in TRANSFER_METHODS:
        raise ValueError(f"unknown transfer method {method!r}; choose one of {TRANSFER_METHODS}")
    torch.manual_seed(seed)
    device = next(pretrained.parameters()).device
    if method == "frozen features + linear head":
        features = copy.deepcopy(pretrained[:7]).requires_grad_(False)    # conv-pool-conv-pool-flatten: 400
        net = nn.Sequential(features, nn.Linear(400, n_classes)).to(device)
        return net, list(net[1].parameters())
    net = copy.deepcopy(pretrained) if method == "fine-tune all layers" else lenet5_torch().to(device)
    net[-1] = nn.Linear(net[-1].in_features, n_classes).to(device)
    if device.type == "cuda":             # channels-last weights: the layout a GPU's convolutions are fastest in
        net = net.to(memory_format=torch.channels_last)
    return net, list(net.parameters())
