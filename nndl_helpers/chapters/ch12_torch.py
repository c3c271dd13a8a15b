"""PyTorch code taught in notebooks/12_deep_belief_networks.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
from nndl_helpers.chapters.ch12 import check_binary, check_steps, check_temperature


import numpy as np
import torch
from torch import nn


class TorchRBM(nn.Module):
    """The RBM of chapter 12 in PyTorch: params W (D, H), b (D,), c (H,); CD-k or PCD-k by autograd on the
    free-energy surrogate. `uniform(shape)` supplies U[0, 1) draws (default torch.rand on the device)."""

    def __init__(self, n_visible, n_hidden, *, k=1, persistent=False, weight_std=0.01, seed=0, dtype=torch.float32):
        super().__init__()
        self.k, self.persistent = check_steps(k), bool(persistent)
        gen = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(weight_std * torch.randn(n_visible, n_hidden, generator=gen, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(n_visible, dtype=dtype))
        self.c = nn.Parameter(torch.zeros(n_hidden, dtype=dtype))
        self.chain = None

    @classmethod
    def from_numpy(cls, params, *, k=1, persistent=False, dtype=torch.float32):
        """A TorchRBM holding a copy of a NumPy RBM's params dict (the same start)."""
        model = cls(*params["W"].shape, k=k, persistent=persistent, dtype=dtype)
        with torch.no_grad():
            for name in "Wbc":
                getattr(model, name).copy_(torch.from_numpy(np.asarray(params[name])))
        return model

    def free_energy(self, v):
        return -(v @ self.b) - nn.functional.softplus(v @ self.W + self.c).sum(1)

    def hidden_probs(self, v, T=1.0):
        return torch.sigmoid((v @ self.W + self.c) / check_temperature(T))

    def visible_probs(self, h, T=1.0):
        return torch.sigmoid((h @ self.W.T + self.b) / check_temperature(T))

    @torch.no_grad()
    def gibbs(self, v, k, uniform=None, T=1.0):
        uniform = uniform or (lambda shape: torch.rand(shape, device=v.device, dtype=v.dtype))
        for _ in range(check_steps(k)):
            ph = self.hidden_probs(v, T)
            h = (uniform(ph.shape).to(ph) < ph).to(v.dtype)
            pv = self.visible_probs(h, T)
            v = (uniform(pv.shape).to(pv) < pv).to(v.dtype)
        return v

    def loss(self, v, uniform=None):
        """The CD surrogate mean F(v) - mean F(v_neg); its gradient is the CD-k (or PCD-k) estimate."""
        if self.persistent:
            if self.chain is None or len(self.chain) != len(v):
                self.chain = v.detach().clone()
            self.chain = v_neg = self.gibbs(self.chain, self.k, uniform)
        else:
            v_neg = self.gibbs(v, self.k, uniform)
        return self.free_energy(v).mean() - self.free_energy(v_neg).mean()


def fit_torch_rbm(model, X, *, epochs, batch_size, optimizer, rng=None, generator=None):
    """Train a TorchRBM on the binary rows of the tensor X (on the model's device).

    rng        a NumPy Generator: mini-batch order and uniforms drawn exactly as fit_rbm draws them (replay).
    generator  otherwise, an optional torch.Generator on X's device for torch.randperm / torch.rand.
    Returns the mean CD surrogate of each epoch (read once per epoch, not per step).
    """
    check_binary(X.cpu().numpy() if X.device.type != "cpu" else X.numpy(), "X")
    if rng is not None:
        def uniform(shape):
            return torch.from_numpy(rng.random(tuple(shape))).to(X.device)
    else:
        def uniform(shape):
            return torch.rand(tuple(shape), device=X.device, dtype=X.dtype, generator=generator)
    history = []
    for _ in range(epochs):
        order = (torch.from_numpy(rng.permutation(len(X))) if rng is not None
                 else torch.randperm(len(X), device=X.device, generator=generator))
        total = torch.zeros((), device=X.device, dtype=X.dtype)
        for start in range(0, len(X), batch_size):
            loss = model.loss(X[order[start:start + batch_size].to(X.device)], uniform)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        history.append(total.item() / -(-len(X) // batch_size))
    return history


class DBNClassifier(nn.Module):
    """A DBN fine-tuned as a classifier: sigmoid layers (started from RBMs or at random) and a softmax layer."""

    def __init__(self, sizes, n_classes=10):
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], n_classes)

    @classmethod
    def from_rbms(cls, rbms, n_classes=10):
        """Hidden layer l takes the l-th NumPy RBM's W (transposed: nn.Linear stores (out, in)) and c."""
        sizes = [rbms[0].params["W"].shape[0]] + [r.params["W"].shape[1] for r in rbms]
        model = cls(sizes, n_classes)
        with torch.no_grad():
            for layer, rbm in zip(model.hidden, rbms):
                layer.weight.copy_(torch.from_numpy(rbm.params["W"].T.copy()))
                layer.bias.copy_(torch.from_numpy(rbm.params["c"]))
        return model

    def features(self, x):
        """The hidden layers' activations, bottom first."""
        out = []
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
            out.append(x)
        return out

    def forward(self, x):
        return self.out(self.features(x)[-1])
