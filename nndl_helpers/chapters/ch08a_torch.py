"""PyTorch code taught in notebooks/08a_attention.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math
import numpy as np


import torch
import torch.nn as nn
import torch.nn.functional as F

class TransformerBlock(nn.Module):
    """Pre-LN Transformer block in PyTorch, the twin of transformer_block_forward (plus dropout)."""

    def __init__(self, d_model, num_heads, dropout=0.0, hidden=None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        hidden = 4 * d_model if hidden is None else hidden
        self.num_heads, self.dropout = num_heads, dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, d_model), nn.Dropout(dropout))
        self.resid_drop = nn.Dropout(dropout)
        self.keep_attention, self.attention = False, None   # True: keep the weights (N, h, T, T) in .attention

    def forward(self, x, mask=None, causal=False):
        """x (N, T, D); mask boolean broadcastable to (N, h, T, T), True = may attend; or causal=True."""
        N, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(N, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.keep_attention:
            s = q @ k.transpose(-1, -2) / math.sqrt(D // self.num_heads)
            allowed = mask
            if causal:
                tril = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                allowed = tril if mask is None else mask & tril
            if allowed is not None:
                s = s.masked_fill(~allowed, float("-inf"))
            self.attention = torch.softmax(s.float(), dim=-1).detach()
            heads = torch.softmax(s, dim=-1) @ v
        else:
            if causal and mask is not None:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                                   dropout_p=self.dropout if self.training else 0.0)
        x = x + self.resid_drop(self.proj(heads.transpose(1, 2).reshape(N, T, D)))
        return x + self.mlp(self.ln2(x))

    @torch.no_grad()
    def load_numpy(self, params):
        """Copy a NumPy parameter dict (BLOCK_PARAMS, from init_transformer_block) into this module."""
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=self.qkv.weight.dtype)
        for ln, i in ((self.ln1, 1), (self.ln2, 2)):
            ln.weight.copy_(t(params[f"ln{i}_gamma"]))
            ln.bias.copy_(t(params[f"ln{i}_beta"]))
        self.qkv.weight.copy_(t(np.concatenate([params["Wq"], params["Wk"], params["Wv"]], axis=1).T))
        self.proj.weight.copy_(t(params["Wo"].T))
        self.mlp[0].weight.copy_(t(params["W1"].T))
        self.mlp[0].bias.copy_(t(params["b1"]))
        self.mlp[2].weight.copy_(t(params["W2"].T))
        self.mlp[2].bias.copy_(t(params["b2"]))
        return self
