"""PyTorch code taught in notebooks/05a_convolution.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import torch
from torch import nn


def lenet5_torch():
    """The same network in PyTorch (nn.Linear stores W transposed: (D_out, D_in))."""
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def copy_lenet_params(params, net):
    """Load a LeNet5.params dict into lenet5_torch()'s layers."""
    layers = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for l, layer in enumerate(layers, start=1):
            W = torch.as_tensor(params[f"W{l}"])
            layer.weight.copy_(W.T if isinstance(layer, nn.Linear) else W)
            layer.bias.copy_(torch.as_tensor(params[f"b{l}"]))
    return net
