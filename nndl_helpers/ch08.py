"""Code taught in notebooks/08_attention_transformer.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nndl_helpers.ch03 import softmax, softmax_cross_entropy
from nndl_helpers.ch04 import affine_backward, affine_forward, gelu_backward, gelu_forward
from nndl_helpers.ch06 import Vocab
from nndl_helpers.ch07 import layernorm_backward, layernorm_forward


def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    """Gaussian-kernel regression as attention pooling.

    queries (M,), keys (N,), values (N,) or (N, C); bandwidth h > 0.
    Returns the predictions (M,) or (M, C) and the attention weights (M, N), each row summing to 1.
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    scores = -(np.asarray(queries)[:, None] - np.asarray(keys)[None, :]) ** 2 / (2 * bandwidth ** 2)
    weights = softmax(scores)
    return weights @ values, weights


def additive_attention_scores(Q, K, Wq, Wk, v):
    """Additive (Bahdanau) scores s[i, j] = v^T tanh(Q[i] Wq + K[j] Wk).

    Q (..., Tq, dq), K (..., Tk, dk), Wq (dq, H), Wk (dk, H), v (H,). Returns scores (..., Tq, Tk).
    """
    hidden = np.tanh((Q @ Wq)[..., :, None, :] + (K @ Wk)[..., None, :, :])   # (..., Tq, Tk, H)
    return hidden @ v


def causal_mask(T):
    """(T, T) boolean mask, True on and below the diagonal: position i may attend to j <= i."""
    if int(T) < 1:
        raise ValueError(f"sequence length must be >= 1, got {T}")
    return np.tril(np.ones((int(T), int(T)), dtype=bool))


def padding_mask(lengths, T):
    """(N, 1, 1, T) boolean mask, True for the first lengths[n] positions (real tokens) of sequence n.

    Broadcasts against scores of shape (N, heads, T_q, T). Raises ValueError for lengths outside [1, T].
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must be a 1-D array of values in [1, {T}], got {lengths.tolist()}")
    return (np.arange(T)[None, :] < lengths[:, None])[:, None, None, :]


def _check_mask(mask, scores_shape):
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be boolean (True = may attend), got dtype {mask.dtype}")
    try:
        fits = np.broadcast_shapes(mask.shape, scores_shape) == tuple(scores_shape)   # and does not add axes
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"mask of shape {mask.shape} does not broadcast to the scores' shape {scores_shape} "
                         f"(..., T_q, T_k); a key padding mask is (N, 1, 1, T_k), as padding_mask() makes")
    if not mask.any(axis=-1).all():
        raise ValueError("the mask hides every key from some query: each row needs at least one True")
    return mask


def scaled_dot_product_attention_forward(Q, K, V, mask=None):
    """Attention O = softmax(Q K^T / sqrt(d_k) masked) V over the last two axes.

    Q (..., Tq, dk), K (..., Tk, dk), V (..., Tk, dv); leading axes (batch, heads) broadcast.
    mask: None or boolean, broadcastable to (..., Tq, Tk), True = query i may attend to key j.
    Returns O (..., Tq, dv) and a cache; cache[3] holds the attention weights A (..., Tq, Tk).
    Keeps the dtype (float32 in, float32 out).
    """
    if Q.shape[-1] != K.shape[-1] or K.shape[-2] != V.shape[-2]:
        raise ValueError(f"need Q (..., Tq, dk), K (..., Tk, dk), V (..., Tk, dv); got {Q.shape}, {K.shape}, {V.shape}")
    dtype = np.result_type(Q, K, V)
    scale = dtype.type(1.0 / math.sqrt(Q.shape[-1]))
    S = Q @ np.swapaxes(K, -1, -2)
    S *= scale
    if mask is not None:
        S = np.where(_check_mask(mask, S.shape), S, dtype.type(-np.inf))
    S -= S.max(axis=-1, keepdims=True)          # the softmax, in place: S becomes A
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S @ V, (Q, K, V, S, scale)


def scaled_dot_product_attention_backward(dO, cache):
    """Gradients dQ, dK, dV (shapes of Q, K, V) of the loss, given dO = dL/dO (..., Tq, dv)."""
    Q, K, V, A, scale = cache
    dV = np.swapaxes(A, -1, -2) @ dO
    dS = dO @ np.swapaxes(V, -1, -2)                           # dL/dA, overwritten in place by dL/dS
    dS -= np.einsum("...ij,...ij->...i", dS, A)[..., None]
    dS *= A
    dS *= scale
    return dS @ K, np.swapaxes(dS, -1, -2) @ Q, dV


def multi_head_cross_attention_forward(x_q, x_kv, Wq, Wk, Wv, Wo, num_heads, mask=None):
    """Multi-head attention (no biases): queries from x_q, keys and values from x_kv; vectorised over batch and heads.

    x_q (N, Tq, D), the sequence that asks (the decoder); x_kv (N, Tk, D_kv), the sequence that is read (the
    encoder's output); Tq and Tk may differ. Wq (D, D); Wk, Wv (D_kv, D); Wo (D, D_out); num_heads h divides D.
    mask: None or boolean broadcastable to (N, h, Tq, Tk), True = may attend. For the encoder's padding use
          padding_mask(src_lengths, Tk) (N, 1, 1, Tk); a 2-D mask is read as (Tq, Tk).
    Returns out (N, Tq, D_out) = concat_m(softmax(Q_m K_m^T / sqrt(d_k) + mask) V_m) Wo with Q = x_q Wq,
    K = x_kv Wk, V = x_kv Wv, and a cache; cache[4] is the attention cache, cache[4][3] the weights (N, h, Tq, Tk).
    float32 in -> float32 out (the dtype of the inputs and the weights is kept).
    """
    if np.ndim(x_q) != 3 or np.ndim(x_kv) != 3 or x_q.shape[0] != x_kv.shape[0]:
        raise ValueError(f"need x_q (N, T_q, D) and x_kv (N, T_k, D_kv) with the same batch size N, "
                         f"got shapes {np.shape(x_q)} and {np.shape(x_kv)}")
    (N, Tq, D), (_, Tk, D_kv) = x_q.shape, x_kv.shape
    h = int(num_heads)
    if h < 1 or D % h:
        raise ValueError(f"num_heads={num_heads} must divide the model width D={D}")
    if Wq.shape != (D, D) or Wk.shape != (D_kv, D) or Wv.shape != (D_kv, D) or Wo.shape[0] != D:
        raise ValueError(f"need Wq ({D}, {D}), Wk and Wv ({D_kv}, {D}), Wo ({D}, D_out); got {Wq.shape}, "
                         f"{Wk.shape}, {Wv.shape}, {Wo.shape}")
    d_k = D // h
    W_kv = np.concatenate([Wk, Wv], axis=1)                            # (D_kv, 2D): one product for K and V
    x_q2d, x_kv2d = x_q.reshape(N * Tq, D), x_kv.reshape(N * Tk, D_kv)
    q = (x_q2d @ Wq).reshape(N, Tq, h, d_k).transpose(0, 2, 1, 3)           # (N, h, Tq, d_k), a view
    kv = (x_kv2d @ W_kv).reshape(N, Tk, 2, h, d_k).transpose(2, 0, 3, 1, 4)  # (2, N, h, Tk, d_k), a view
    heads, attn_cache = scaled_dot_product_attention_forward(q, kv[0], kv[1], mask)
    concat = heads.transpose(0, 2, 1, 3).reshape(N * Tq, D)           # (N Tq, D): heads side by side
    out = (concat @ Wo).reshape(N, Tq, Wo.shape[1])
    return out, (x_q2d, x_kv2d, Wq, W_kv, attn_cache, concat, Wo, (N, Tq, Tk, D, D_kv, h, d_k))


def multi_head_cross_attention_backward(dout, cache):
    """Gradients of multi_head_cross_attention_forward, given dout = dL/dout (N, Tq, D_out).

    Returns a dict: dx_q (N, Tq, D), dx_kv (N, Tk, D_kv), dWq (D, D), dWk, dWv (D_kv, D), dWo (D, D_out).
    """
    x_q2d, x_kv2d, Wq, W_kv, attn_cache, concat, Wo, (N, Tq, Tk, D, D_kv, h, d_k) = cache
    dout2d = dout.reshape(N * Tq, Wo.shape[1])
    dWo = concat.T @ dout2d
    dheads = (dout2d @ Wo.T).reshape(N, Tq, h, d_k).transpose(0, 2, 1, 3)      # (N, h, Tq, d_k)
    dq, dk, dv = scaled_dot_product_attention_backward(dheads, attn_cache)
    dq2d = dq.transpose(0, 2, 1, 3).reshape(N * Tq, D)
    dkv = np.empty((N, Tk, 2, h, d_k), dtype=dk.dtype)
    dkv_heads = dkv.transpose(2, 0, 3, 1, 4)                          # the forward's layout, as a view
    dkv_heads[0], dkv_heads[1] = dk, dv
    dkv = dkv.reshape(N * Tk, 2 * D)
    dW_kv = x_kv2d.T @ dkv
    return {"dx_q": (dq2d @ Wq.T).reshape(N, Tq, D), "dx_kv": (dkv @ W_kv.T).reshape(N, Tk, D_kv),
            "dWq": x_q2d.T @ dq2d, "dWk": dW_kv[:, :D], "dWv": dW_kv[:, D:], "dWo": dWo}


def multi_head_attention_forward(x, Wq, Wk, Wv, Wo, num_heads, mask=None):
    """Multi-head self-attention: multi_head_cross_attention_forward with x_q = x_kv = x.

    x (N, T, D); Wq, Wk, Wv (D, D); Wo (D, D_out); num_heads h divides D (head size d_k = D / h).
    mask: None or boolean broadcastable to (N, h, T, T), True = may attend: causal_mask(T) (T, T),
          padding_mask(lengths, T) (N, 1, 1, T), or their & .
    Returns out (N, T, D_out) and a cache (the cross-attention's; cache[4][3] holds the weights).
    """
    if np.ndim(x) != 3:
        raise ValueError(f"x must be (N, T, D), got shape {np.shape(x)}")
    return multi_head_cross_attention_forward(x, x, Wq, Wk, Wv, Wo, num_heads, mask)


def multi_head_attention_backward(dout, cache):
    """Gradients of multi_head_attention_forward, given dout = dL/dout (N, T, D_out).

    Returns a dict: dx (N, T, D), dWq, dWk, dWv (D, D), dWo (D, D_out); dtype of dout.
    """
    grads = multi_head_cross_attention_backward(dout, cache)
    dx = grads.pop("dx_q") + grads.pop("dx_kv")          # x feeds the queries *and* the keys and values
    return {"dx": dx} | grads


def sinusoidal_positional_encoding(T, D, base=10000.0):
    """(T, D) sinusoidal position codes: p[t, 2i] = sin(t / base^(2i/D)), p[t, 2i+1] = cos(same)."""
    if int(T) < 1 or int(D) < 2 or D % 2:
        raise ValueError(f"need T >= 1 and an even D >= 2, got T={T}, D={D}")
    angles = np.arange(T)[:, None] / base ** (np.arange(0, D, 2)[None, :] / D)     # (T, D/2)
    pe = np.empty((int(T), int(D)))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angles), np.cos(angles)
    return pe


BLOCK_PARAMS = ("ln1_gamma", "ln1_beta", "Wq", "Wk", "Wv", "Wo", "ln2_gamma", "ln2_beta", "W1", "b1", "W2", "b2")


def init_transformer_block(D, rng, hidden=None, dtype=np.float64, residual_scale=1.0):
    """Parameters of one pre-LN block (dict over BLOCK_PARAMS): weights N(0, 1/fan_in), LN gamma=1, biases 0.

    residual_scale multiplies Wo and W2, the layers that write into the residual stream (GPT-2 uses
    1/sqrt(2 * num_layers) so that deep stacks start close to the identity).
    """
    hidden = 4 * D if hidden is None else hidden
    w = lambda fan_in, fan_out, s=1.0: (s * rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)).astype(dtype)
    return {"ln1_gamma": np.ones(D, dtype), "ln1_beta": np.zeros(D, dtype),
            "Wq": w(D, D), "Wk": w(D, D), "Wv": w(D, D), "Wo": w(D, D, residual_scale),
            "ln2_gamma": np.ones(D, dtype), "ln2_beta": np.zeros(D, dtype),
            "W1": w(D, hidden), "b1": np.zeros(hidden, dtype), "W2": w(hidden, D, residual_scale),
            "b2": np.zeros(D, dtype)}


def transformer_block_forward(x, params, num_heads, mask=None):
    """Pre-LN block: h = x + MHA(LN1(x)); y = h + W2 GELU(W1 LN2(h) + b1) + b2.

    x (N, T, D); params a dict over BLOCK_PARAMS; mask as in multi_head_attention_forward.
    Returns y (N, T, D) and a cache.
    """
    p = params
    N, T, D = x.shape
    a, ln1_cache = layernorm_forward(x, p["ln1_gamma"], p["ln1_beta"])
    att, att_cache = multi_head_attention_forward(a, p["Wq"], p["Wk"], p["Wv"], p["Wo"], num_heads, mask)
    hid = x + att
    b, ln2_cache = layernorm_forward(hid, p["ln2_gamma"], p["ln2_beta"])
    z1, fc1_cache = affine_forward(b.reshape(N * T, D), p["W1"], p["b1"])
    g, gelu_cache = gelu_forward(z1)
    z2, fc2_cache = affine_forward(g, p["W2"], p["b2"])
    y = hid + z2.reshape(N, T, D)
    return y, (ln1_cache, att_cache, ln2_cache, fc1_cache, gelu_cache, fc2_cache, (N, T, D))


def transformer_block_backward(dy, cache):
    """Gradients of transformer_block_forward: a dict with "x" (N, T, D) and one entry per parameter."""
    ln1_cache, att_cache, ln2_cache, fc1_cache, gelu_cache, fc2_cache, (N, T, D) = cache
    grads = {}
    dg, grads["W2"], grads["b2"] = affine_backward(dy.reshape(N * T, D), fc2_cache)
    db, grads["W1"], grads["b1"] = affine_backward(gelu_backward(dg, gelu_cache), fc1_cache)
    dhid_ln, grads["ln2_gamma"], grads["ln2_beta"] = layernorm_backward(db.reshape(N, T, D), ln2_cache)
    dhid = dy + dhid_ln                                   # the residual passes dy straight through
    att = multi_head_attention_backward(dhid, att_cache)
    grads.update({k: att["d" + k] for k in ("Wq", "Wk", "Wv", "Wo")})
    dx_ln, grads["ln1_gamma"], grads["ln1_beta"] = layernorm_backward(att["dx"], ln1_cache)
    grads["x"] = dhid + dx_ln
    return grads


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
        self.keep_attention = False          # True: compute the weights explicitly and store them
        self.attention = None                # (N, h, T, T) after a forward with keep_attention

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
        self.ln1.weight.copy_(t(params["ln1_gamma"]))
        self.ln1.bias.copy_(t(params["ln1_beta"]))
        self.qkv.weight.copy_(t(np.concatenate([params["Wq"], params["Wk"], params["Wv"]], axis=1).T))
        self.proj.weight.copy_(t(params["Wo"].T))
        self.ln2.weight.copy_(t(params["ln2_gamma"]))
        self.ln2.bias.copy_(t(params["ln2_beta"]))
        self.mlp[0].weight.copy_(t(params["W1"].T))
        self.mlp[0].bias.copy_(t(params["b1"]))
        self.mlp[2].weight.copy_(t(params["W2"].T))
        self.mlp[2].bias.copy_(t(params["b2"]))
        return self


class NumpyTransformer:
    """Token + learned position embeddings, pre-LN Transformer blocks, final LayerNorm, linear read-out.

        model = NumpyTransformer(vocab_size=10, max_len=10, d_model=32, num_heads=2, num_layers=2, rng=rng)
        loss, grads = model.loss(X, Y)        # X, Y integer arrays (N, T); grads keyed like model.params
        logits = model.forward(X)[0]          # (N, T, vocab_size)

    causal=True adds the causal mask (a language model); False lets every position see all others.
    """

    def __init__(self, vocab_size, max_len, d_model, num_heads, num_layers, rng, causal=False, dtype=np.float32):
        self.num_heads, self.num_layers, self.causal, self.max_len = num_heads, num_layers, causal, max_len
        self.params = {"tok_emb": (0.5 * rng.standard_normal((vocab_size, d_model))).astype(dtype),
                       "pos_emb": (0.5 * rng.standard_normal((max_len, d_model))).astype(dtype)}
        for layer in range(num_layers):
            block = init_transformer_block(d_model, rng, dtype=dtype, residual_scale=1 / math.sqrt(2 * num_layers))
            self.params.update({f"block{layer}.{k}": v for k, v in block.items()})
        self.params.update({"lnf_gamma": np.ones(d_model, dtype), "lnf_beta": np.zeros(d_model, dtype),
                            "W_out": (rng.standard_normal((d_model, vocab_size)) / math.sqrt(d_model)).astype(dtype),
                            "b_out": np.zeros(vocab_size, dtype)})

    def block(self, layer):
        return {k: self.params[f"block{layer}.{k}"] for k in BLOCK_PARAMS}

    def forward(self, X):
        """Logits (N, T, V) for integer inputs X (N, T), and the caches for backward."""
        X = np.asarray(X)
        if X.ndim != 2 or not 1 <= X.shape[1] <= self.max_len:
            raise ValueError(f"X must be (N, T) with 1 <= T <= max_len={self.max_len}, got shape {X.shape}")
        V = self.params["tok_emb"].shape[0]
        if X.min() < 0 or X.max() >= V:
            raise ValueError(f"token ids must lie in [0, {V}), got range [{X.min()}, {X.max()}]")
        N, T = X.shape
        mask = causal_mask(T) if self.causal else None
        h = self.params["tok_emb"][X] + self.params["pos_emb"][:T]
        caches = []
        for layer in range(self.num_layers):
            h, cache = transformer_block_forward(h, self.block(layer), self.num_heads, mask)
            caches.append(cache)
        a, lnf_cache = layernorm_forward(h, self.params["lnf_gamma"], self.params["lnf_beta"])
        logits, out_cache = affine_forward(a.reshape(N * T, -1), self.params["W_out"], self.params["b_out"])
        return logits.reshape(N, T, V), (X, caches, lnf_cache, out_cache)

    def backward(self, dlogits, cache):
        """Gradients of every parameter, given dlogits = dL/dlogits (N, T, V)."""
        X, caches, lnf_cache, out_cache = cache
        N, T, V = dlogits.shape
        grads = {}
        da, grads["W_out"], grads["b_out"] = affine_backward(dlogits.reshape(N * T, V), out_cache)
        dh, grads["lnf_gamma"], grads["lnf_beta"] = layernorm_backward(da.reshape(N, T, -1), lnf_cache)
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_block_backward(dh, caches[layer])
            dh = block_grads.pop("x")
            grads.update({f"block{layer}.{k}": v for k, v in block_grads.items()})
        grads["tok_emb"] = np.zeros_like(self.params["tok_emb"])
        np.add.at(grads["tok_emb"], X, dh)                       # rows of repeated tokens accumulate
        grads["pos_emb"] = np.zeros_like(self.params["pos_emb"])
        grads["pos_emb"][:T] = dh.sum(axis=0)
        return grads

    def loss(self, X, Y):
        """Mean cross-entropy over all N*T positions, and the gradients of every parameter."""
        logits, cache = self.forward(X)
        N, T, V = logits.shape
        if np.shape(Y) != (N, T):
            raise ValueError(f"targets Y must have the shape of X, {(N, T)}, got {np.shape(Y)}")
        loss, dlogits = softmax_cross_entropy(logits.reshape(N * T, V), np.asarray(Y).reshape(N * T))  # chapter 3
        return loss, self.backward(dlogits.reshape(N, T, V), cache)


DECODER_BLOCK_PARAMS = ("ln1_gamma", "ln1_beta", "Wq", "Wk", "Wv", "Wo",                       # causal self-attention
                        "ln2_gamma", "ln2_beta", "cross_Wq", "cross_Wk", "cross_Wv", "cross_Wo",  # cross-attention
                        "ln3_gamma", "ln3_beta", "W1", "b1", "W2", "b2")                        # position-wise MLP


def init_decoder_block(D, rng, hidden=None, dtype=np.float64, residual_scale=1.0):
    """Parameters of one pre-LN decoder block (dict over DECODER_BLOCK_PARAMS): those of init_transformer_block,
    plus LN3 and the cross-attention's weights, initialised the same way (N(0, 1/fan_in), gamma=1, beta=0)."""
    p = init_transformer_block(D, rng, hidden, dtype, residual_scale)
    w = lambda s=1.0: (s * rng.standard_normal((D, D)) / math.sqrt(D)).astype(dtype)
    p |= {"cross_Wq": w(), "cross_Wk": w(), "cross_Wv": w(), "cross_Wo": w(residual_scale),
          "ln3_gamma": np.ones(D, dtype), "ln3_beta": np.zeros(D, dtype)}
    return {k: p[k] for k in DECODER_BLOCK_PARAMS}


def transformer_decoder_block_forward(x, memory, params, num_heads, memory_mask=None, self_mask=None):
    """Pre-LN decoder block (as nn.TransformerDecoderLayer(norm_first=True) with a tanh-GELU MLP, no attention biases):

        h1 = x  + MHA(LN1(x); causal & self_mask)                 masked self-attention over the outputs so far
        h2 = h1 + CrossMHA(LN2(h1), memory; memory_mask)           queries from the decoder, keys/values from memory
        y  = h2 + W2 GELU(W1 LN3(h2) + b1) + b2

    x (N, T, D) the decoder's input; memory (N, S, D) the encoder's output (S may differ from T);
    memory_mask: None or boolean broadcastable to (N, h, T, S), e.g. padding_mask(src_lengths, S);
    self_mask: None or an extra boolean mask broadcastable to (N, h, T, T), combined with the causal mask.
    Returns y (N, T, D) and a cache.
    """
    p = params
    if np.ndim(x) != 3 or np.ndim(memory) != 3 or memory.shape[0] != x.shape[0] or memory.shape[2] != x.shape[2]:
        raise ValueError(f"need x (N, T, D) and memory (N, S, D) with the same N and D, got shapes "
                         f"{np.shape(x)} and {np.shape(memory)}")
    N, T, D = x.shape
    causal = causal_mask(T) if self_mask is None else causal_mask(T) & self_mask
    a, ln1_cache = layernorm_forward(x, p["ln1_gamma"], p["ln1_beta"])
    att, self_cache = multi_head_attention_forward(a, p["Wq"], p["Wk"], p["Wv"], p["Wo"], num_heads, causal)
    h1 = x + att
    b, ln2_cache = layernorm_forward(h1, p["ln2_gamma"], p["ln2_beta"])
    cross, cross_cache = multi_head_cross_attention_forward(b, memory, p["cross_Wq"], p["cross_Wk"], p["cross_Wv"],
                                                            p["cross_Wo"], num_heads, memory_mask)
    h2 = h1 + cross
    c, ln3_cache = layernorm_forward(h2, p["ln3_gamma"], p["ln3_beta"])
    z1, fc1_cache = affine_forward(c.reshape(N * T, D), p["W1"], p["b1"])
    g, gelu_cache = gelu_forward(z1)
    z2, fc2_cache = affine_forward(g, p["W2"], p["b2"])
    y = h2 + z2.reshape(N, T, D)
    return y, (ln1_cache, self_cache, ln2_cache, cross_cache, ln3_cache, fc1_cache, gelu_cache, fc2_cache, (N, T, D))


def transformer_decoder_block_backward(dy, cache):
    """Gradients of transformer_decoder_block_forward: a dict with "x" (N, T, D), "memory" (N, S, D) and one
    entry per parameter. The memory's gradient comes only through the cross-attention's keys and values."""
    ln1_cache, self_cache, ln2_cache, cross_cache, ln3_cache, fc1_cache, gelu_cache, fc2_cache, (N, T, D) = cache
    grads = {}
    dg, grads["W2"], grads["b2"] = affine_backward(dy.reshape(N * T, D), fc2_cache)
    dc, grads["W1"], grads["b1"] = affine_backward(gelu_backward(dg, gelu_cache), fc1_cache)
    dh2_ln, grads["ln3_gamma"], grads["ln3_beta"] = layernorm_backward(dc.reshape(N, T, D), ln3_cache)
    dh2 = dy + dh2_ln                                     # residual: dy passes straight through
    cross = multi_head_cross_attention_backward(dh2, cross_cache)
    grads.update({"cross_" + k: cross["d" + k] for k in ("Wq", "Wk", "Wv", "Wo")})
    dh1_ln, grads["ln2_gamma"], grads["ln2_beta"] = layernorm_backward(cross["dx_q"], ln2_cache)
    dh1 = dh2 + dh1_ln
    att = multi_head_attention_backward(dh1, self_cache)
    grads.update({k: att["d" + k] for k in ("Wq", "Wk", "Wv", "Wo")})
    dx_ln, grads["ln1_gamma"], grads["ln1_beta"] = layernorm_backward(att["dx"], ln1_cache)
    grads["x"] = dh1 + dx_ln
    grads["memory"] = cross["dx_kv"]
    return grads


class NumpyEncoderDecoder:
    """Encoder-decoder Transformer in NumPy: pre-LN encoder blocks over the source, pre-LN decoder blocks
    (causal self-attention, cross-attention to the encoder's output, MLP) over the target, linear read-out.

        model = NumpyEncoderDecoder(src_vocab=11, tgt_vocab=13, max_src_len=8, max_tgt_len=9, d_model=32,
                                    num_heads=2, num_layers=1, rng=rng, pad_id=10)
        loss, grads = model.loss(src, tgt_in, tgt_out)   # integer arrays (N, S), (N, T), (N, T)
        logits = model.forward(src, tgt_in)[0]           # (N, T, tgt_vocab)

    Source tokens equal to pad_id are hidden from every attention (key padding); targets equal to pad_id are
    left out of the loss. Training uses teacher forcing: tgt_in is the target shifted right behind a BOS token.
    """

    def __init__(self, src_vocab, tgt_vocab, max_src_len, max_tgt_len, d_model, num_heads, num_layers, rng,
                 pad_id=None, dtype=np.float32):
        self.num_heads, self.num_layers, self.pad_id = num_heads, num_layers, pad_id
        self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
        emb = lambda rows: (0.5 * rng.standard_normal((rows, d_model))).astype(dtype)
        self.params = {"src_emb": emb(src_vocab), "src_pos": emb(max_src_len),
                       "tgt_emb": emb(tgt_vocab), "tgt_pos": emb(max_tgt_len)}
        scale = 1 / math.sqrt(2 * num_layers)
        for layer in range(num_layers):
            self.params |= {f"enc{layer}.{k}": v for k, v in
                            init_transformer_block(d_model, rng, dtype=dtype, residual_scale=scale).items()}
        for layer in range(num_layers):
            self.params |= {f"dec{layer}.{k}": v for k, v in
                            init_decoder_block(d_model, rng, dtype=dtype, residual_scale=scale).items()}
        self.params |= {"enc_ln_gamma": np.ones(d_model, dtype), "enc_ln_beta": np.zeros(d_model, dtype),
                        "dec_ln_gamma": np.ones(d_model, dtype), "dec_ln_beta": np.zeros(d_model, dtype),
                        "W_out": (rng.standard_normal((d_model, tgt_vocab)) / math.sqrt(d_model)).astype(dtype),
                        "b_out": np.zeros(tgt_vocab, dtype)}

    def _check(self, name, X, vocab, max_len):
        X = np.asarray(X)
        if X.ndim != 2 or not 1 <= X.shape[1] <= max_len:
            raise ValueError(f"{name} must be (N, T) with 1 <= T <= {max_len}, got shape {X.shape}")
        if X.min() < 0 or X.max() >= vocab:
            raise ValueError(f"{name} token ids must lie in [0, {vocab}), got range [{X.min()}, {X.max()}]")
        return X

    def encode(self, src):
        """Encoder output (N, S, D), the memory mask (N, 1, 1, S) or None, and the caches."""
        src = self._check("src", src, self.params["src_emb"].shape[0], self.max_src_len)
        mask = None if self.pad_id is None else (src != self.pad_id)[:, None, None, :]
        if mask is not None and not mask.any(axis=-1).all():
            raise ValueError("a source sequence consists of padding only: each needs at least one real token")
        h = self.params["src_emb"][src] + self.params["src_pos"][:src.shape[1]]
        caches = []
        for layer in range(self.num_layers):
            h, cache = transformer_block_forward(h, {k: self.params[f"enc{layer}.{k}"] for k in BLOCK_PARAMS},
                                                 self.num_heads, mask)
            caches.append(cache)
        memory, ln_cache = layernorm_forward(h, self.params["enc_ln_gamma"], self.params["enc_ln_beta"])
        return memory, mask, (src, caches, ln_cache)

    def decode(self, tgt_in, memory, memory_mask):
        """Logits (N, T, tgt_vocab) for decoder inputs tgt_in (N, T) given the encoder's memory, and the caches."""
        tgt_in = self._check("tgt_in", tgt_in, self.params["tgt_emb"].shape[0], self.max_tgt_len)
        N, T = tgt_in.shape
        h = self.params["tgt_emb"][tgt_in] + self.params["tgt_pos"][:T]
        caches = []
        for layer in range(self.num_layers):
            block = {k: self.params[f"dec{layer}.{k}"] for k in DECODER_BLOCK_PARAMS}
            h, cache = transformer_decoder_block_forward(h, memory, block, self.num_heads, memory_mask)
            caches.append(cache)
        a, ln_cache = layernorm_forward(h, self.params["dec_ln_gamma"], self.params["dec_ln_beta"])
        logits, out_cache = affine_forward(a.reshape(N * T, -1), self.params["W_out"], self.params["b_out"])
        return logits.reshape(N, T, -1), (tgt_in, caches, ln_cache, out_cache)

    def forward(self, src, tgt_in):
        memory, mask, enc_cache = self.encode(src)
        logits, dec_cache = self.decode(tgt_in, memory, mask)
        return logits, (enc_cache, dec_cache)

    def backward(self, dlogits, cache):
        """Gradients of every parameter, given dlogits = dL/dlogits (N, T, tgt_vocab)."""
        (src, enc_caches, enc_ln_cache), (tgt_in, dec_caches, dec_ln_cache, out_cache) = cache
        N, T, V = dlogits.shape
        grads = {}
        da, grads["W_out"], grads["b_out"] = affine_backward(dlogits.reshape(N * T, V), out_cache)
        dh, grads["dec_ln_gamma"], grads["dec_ln_beta"] = layernorm_backward(da.reshape(N, T, -1), dec_ln_cache)
        dmemory = 0.0
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_decoder_block_backward(dh, dec_caches[layer])
            dh = block_grads.pop("x")
            dmemory = dmemory + block_grads.pop("memory")          # every decoder block reads the same memory
            grads |= {f"dec{layer}.{k}": v for k, v in block_grads.items()}
        grads["tgt_emb"] = np.zeros_like(self.params["tgt_emb"])
        np.add.at(grads["tgt_emb"], tgt_in, dh)
        grads["tgt_pos"] = np.zeros_like(self.params["tgt_pos"])
        grads["tgt_pos"][:T] = dh.sum(axis=0)
        dh, grads["enc_ln_gamma"], grads["enc_ln_beta"] = layernorm_backward(dmemory, enc_ln_cache)
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_block_backward(dh, enc_caches[layer])
            dh = block_grads.pop("x")
            grads |= {f"enc{layer}.{k}": v for k, v in block_grads.items()}
        grads["src_emb"] = np.zeros_like(self.params["src_emb"])
        np.add.at(grads["src_emb"], src, dh)
        grads["src_pos"] = np.zeros_like(self.params["src_pos"])
        grads["src_pos"][:src.shape[1]] = dh.sum(axis=0)
        return grads

    def loss(self, src, tgt_in, tgt_out):
        """Mean cross-entropy over the target positions that are not padding, and every parameter's gradient."""
        logits, cache = self.forward(src, tgt_in)
        N, T, V = logits.shape
        if np.shape(tgt_out) != (N, T):
            raise ValueError(f"tgt_out must have the shape of tgt_in, {(N, T)}, got {np.shape(tgt_out)}")
        y = np.asarray(tgt_out).reshape(N * T)
        keep = np.ones(N * T, bool) if self.pad_id is None else y != self.pad_id
        loss, dz = softmax_cross_entropy(logits.reshape(N * T, V)[keep], y[keep])       # chapter 3
        dlogits = np.zeros((N * T, V), dz.dtype)
        dlogits[keep] = dz
        return loss, self.backward(dlogits.reshape(N, T, V), cache)

    def greedy_decode(self, src, bos_id, eos_id, max_len=None):
        """Generate up to max_len tokens per source sequence, each time feeding back the most likely one.

        Returns (N, max_len) token ids (after EOS: eos_id) and the last step's cross-attention weights of the
        last decoder block, (N, h, max_len, S)."""
        max_len = self.max_tgt_len if max_len is None else int(max_len)
        if not 1 <= max_len <= self.max_tgt_len:
            raise ValueError(f"max_len must lie in [1, {self.max_tgt_len}], got {max_len}")
        memory, mask, _ = self.encode(src)
        tokens = np.full((memory.shape[0], 1), bos_id)
        for _ in range(max_len):
            logits, (_, caches, _, _) = self.decode(tokens, memory, mask)
            nxt = logits[:, -1].argmax(-1)
            nxt[tokens[:, -1] == eos_id] = eos_id                   # a finished sequence stays finished
            tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        return tokens[:, 1:], caches[-1][3][4][3]


class TinyGPT(nn.Module):
    """Decoder-only Transformer language model: embeddings, causal pre-LN blocks, LayerNorm, linear head.

    forward(idx (N, T) int64) -> logits (N, T, vocab_size); T must not exceed `context`.
    """

    def __init__(self, vocab_size, context, d_model, num_heads, num_layers, dropout=0.0):
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        # PyTorch's default initialisation: for models this small it trains faster than GPT-2's N(0, 0.02)

    def forward(self, idx):
        N, T = idx.shape
        if T > self.context:
            raise ValueError(f"sequence of length {T} is longer than the model's context of {self.context} "
                             f"tokens; crop it to the last {self.context}")
        h = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            h = block(h, causal=True)
        return self.head(self.ln_f(h))


@torch.no_grad()
def generate_text(model, vocab, prompt, num_chars=200, temperature=1.0, top_k=None, seed=0):
    """Continue `prompt` by num_chars characters sampled from the model.

    temperature 0 = greedy; top_k keeps only the k most likely characters. A prompt longer than the
    model's context is cropped to its last `context` characters (the model cannot see further back).
    Raises ValueError for an empty prompt, characters outside the vocabulary (named), a negative
    temperature or top_k < 1.
    """
    if not isinstance(prompt, str) or len(prompt) == 0:
        raise ValueError("the prompt is empty: give at least one character to start from")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
    ids = vocab.encode(prompt, strict=True)               # ValueError naming unknown characters
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.tensor([ids], device=device)
    was_training = model.training
    model.eval()
    out = []
    for _ in range(int(num_chars)):
        logits = model(idx[:, -model.context:])[0, -1].float().cpu()
        logits[0] = -float("inf")                        # never emit <unk>
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                logits[logits < torch.topk(logits, top_k).values[-1]] = -float("inf")
            nxt = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=g))
        out.append(nxt)
        idx = torch.cat([idx, torch.tensor([[nxt]], device=device)], dim=1)
    model.train(was_training)
    return prompt + vocab.decode(out)
