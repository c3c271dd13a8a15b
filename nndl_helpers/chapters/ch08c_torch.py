"""PyTorch code taught in notebooks/08c_external_memory.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import torch
from torch import nn


def memn2n_forward_torch(story, question, params, hops):
    """MemN2N with torch operations: logits (N, V) and attention (N, hops, M), for integer tensors story
    (N, M, L) and question (N, Lq) and a dict params of E0..E{hops}, T0..T{hops} as in MemN2N."""
    M = story.shape[1]
    empty = ~(story != 0).any(dim=-1)                                  # (N, M): True at empty slots
    u = params["E0"][question].sum(dim=1)
    attention = []
    for k in range(1, hops + 1):
        m = params[f"E{k - 1}"][story].sum(dim=2) + params[f"T{k - 1}"][:M]
        c = params[f"E{k}"][story].sum(dim=2) + params[f"T{k}"][:M]
        scores = torch.einsum("nmd,nd->nm", m, u) / math.sqrt(u.shape[-1])
        p = torch.softmax(scores.masked_fill(empty, float("-inf")), dim=-1)
        u = u + torch.einsum("nm,nmd->nd", p, c)
        attention.append(p)
    return u @ params[f"E{hops}"].T, torch.stack(attention, dim=1)


class TorchMemN2N(nn.Module):
    """MemN2N as an nn.Module: the parameters E0..E{hops}, T0..T{hops} in one nn.ParameterDict."""

    def __init__(self, vocab_size, embed_dim=20, hops=3, max_memories=10, std=0.1):
        super().__init__()
        self.hops = int(hops)
        self.params = nn.ParameterDict()
        for k in range(self.hops + 1):
            self.params[f"E{k}"] = nn.Parameter(std * torch.randn(vocab_size, embed_dim))
            self.params[f"T{k}"] = nn.Parameter(std * torch.randn(max_memories, embed_dim))

    def forward(self, story, question):
        """story (N, M, L), question (N, Lq) integer tensors -> logits (N, V)."""
        return memn2n_forward_torch(story, question, self.params, self.hops)[0]

    def attention(self, story, question):
        return memn2n_forward_torch(story, question, self.params, self.hops)[1]


def train_memn2n_torch(model, story, question, answer, order, *, batch_size=32, lr=0.01):
    """Adam on the softmax cross-entropy of the answers, visiting the examples in `order` (epochs, N).

    story, question, answer, order are integer tensors on the model's device (moved there once, by the caller).
    Returns the per-step losses as a float32 tensor on that device (read it once, at the end).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(order.shape[1] / batch_size)
    losses = torch.zeros(order.shape[0] * steps_per_epoch, device=story.device)
    model.train()
    for e in range(order.shape[0]):
        for s in range(steps_per_epoch):
            idx = order[e, s * batch_size:(s + 1) * batch_size]
            loss = nn.functional.cross_entropy(model(story[idx], question[idx]), answer[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[e * steps_per_epoch + s] = loss.detach()
    model.eval()
    return losses
