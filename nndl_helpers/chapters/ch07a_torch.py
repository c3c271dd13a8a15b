"""PyTorch code taught in notebooks/07a_optimization.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
from nndl_helpers.chapters.ch07a import AdaDelta, AdaGrad, Adam, AdamW, RMSprop, SGD


import numpy as np
import torch


def torch_optimizer_like(optimizer, tensors):
    """The torch.optim optimizer with the same hyperparameters as ``optimizer``, over ``tensors``."""
    o, wd = optimizer, optimizer.weight_decay
    if isinstance(o, SGD):
        return torch.optim.SGD(tensors, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=wd)
    if isinstance(o, AdaGrad):
        return torch.optim.Adagrad(tensors, lr=o.lr, eps=o.eps, weight_decay=wd)
    if isinstance(o, RMSprop):
        return torch.optim.RMSprop(tensors, lr=o.lr, alpha=o.beta, eps=o.eps, weight_decay=wd)
    if isinstance(o, AdaDelta):
        return torch.optim.Adadelta(tensors, lr=o.lr, rho=o.beta, eps=o.eps, weight_decay=wd)
    if isinstance(o, AdamW):
        return torch.optim.AdamW(tensors, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=wd)
    if isinstance(o, Adam):
        return torch.optim.Adam(tensors, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=wd)
    raise ValueError(f"no torch.optim counterpart known for {type(o).__name__}")


def compare_optimizer_with_torch(optimizer, shapes, steps=5, seed=0):
    """Run ``optimizer`` and its torch.optim twin for ``steps`` steps on the same random gradients (float64).

    Returns the largest relative error between the two displacements theta_t - theta_0, over all
    steps and parameters (displacements, not parameters, so that a wrong small update cannot hide).
    """
    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.standard_normal(shape) for i, shape in enumerate(shapes)}
    start = {k: p.copy() for k, p in params.items()}
    tensors = {k: torch.tensor(p, requires_grad=True) for k, p in params.items()}
    twin = torch_optimizer_like(optimizer, list(tensors.values()))
    worst = 0.0
    for _ in range(steps):
        grads = {k: rng.standard_normal(p.shape) for k, p in params.items()}
        optimizer.step(params, grads)
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        twin.step()
        for k, p in params.items():
            ref = tensors[k].detach().numpy() - start[k]
            mine = p - start[k]
            err = np.max(np.abs(mine - ref) / np.maximum(1e-8, np.abs(mine) + np.abs(ref)))
            worst = max(worst, float(err))
    return worst
