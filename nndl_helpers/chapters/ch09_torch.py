"""PyTorch code taught in notebooks/09_unsupervised_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder for 28x28 images (N, 1, 28, 28) with pixels in [0, 1].

    encoder  conv 3x3 stride 2 (-> c1 x 14 x 14) -> ReLU -> conv 3x3 stride 2 (-> c2 x 7 x 7) -> ReLU -> linear -> z (N, K)
    decoder  linear -> ReLU -> transposed conv (-> c1 x 14 x 14) -> ReLU -> transposed conv (-> 1 x 28 x 28) -> sigmoid
    The strided convolutions halve the resolution, the transposed convolutions double it back.
    """

    def __init__(self, code_size=2, channels=(16, 32)):
        super().__init__()
        if int(code_size) < 1 or len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"need code_size >= 1 and two channel counts >= 1, got {code_size}, {channels}")
        c1, c2 = channels
        self.code_size = int(code_size)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(c2 * 7 * 7, code_size))
        self.decoder = nn.Sequential(
            nn.Linear(code_size, c2 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c1, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())

    def encode(self, x):
        if x.ndim == 2 and x.shape[1] == 28 * 28:
            x = x.reshape(-1, 1, 28, 28)
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"ConvAutoencoder expects images of shape (N, 1, 28, 28) or (N, 784), got {tuple(x.shape)}")
        return self.encoder(x)

    def decode(self, z):
        if z.ndim != 2 or z.shape[1] != self.code_size:
            raise ValueError(f"ConvAutoencoder expects codes of shape (N, {self.code_size}), got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))
