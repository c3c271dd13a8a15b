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
        np.broadcast_shapes(mask.shape, scores_shape)
    except ValueError:
        raise ValueError(f"mask of shape {mask.shape} does not broadcast to the scores' shape "
                         f"{scores_shape} (..., T_q, T_k)") from None
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


def multi_head_attention_forward(x, Wq, Wk, Wv, Wo, num_heads, mask=None):
    """Multi-head self-attention (no biases), vectorised over batch and heads.

    x (N, T, D); Wq, Wk, Wv (D, D); Wo (D, D_out); num_heads h divides D (head size d_k = D / h).
    mask: None or boolean broadcastable to (N, h, T, T), True = may attend: causal_mask(T) (T, T),
          padding_mask(lengths, T) (N, 1, 1, T), or their & .
    Returns out (N, T, D_out) = concat_m(softmax(Q_m K_m^T / sqrt(d_k) + mask) V_m) Wo, and a cache.
    float32 in -> float32 out (the dtype of x and the weights is kept).
    """
    if np.ndim(x) != 3:
        raise ValueError(f"x must be (N, T, D), got shape {np.shape(x)}")
    N, T, D = x.shape
    h = int(num_heads)
    if h < 1 or D % h:
        raise ValueError(f"num_heads={num_heads} must divide the model width D={D}")
    if Wq.shape != (D, D) or Wk.shape != (D, D) or Wv.shape != (D, D) or Wo.shape[0] != D:
        raise ValueError(f"need Wq, Wk, Wv ({D}, {D}) and Wo ({D}, D_out); got {Wq.shape}, {Wk.shape}, "
                         f"{Wv.shape}, {Wo.shape}")
    d_k = D // h
    W_qkv = np.concatenate([Wq, Wk, Wv], axis=1)                      # (D, 3D): one product for Q, K, V
    x2d = x.reshape(N * T, D)
    qkv = (x2d @ W_qkv).reshape(N, T, 3, h, d_k).transpose(2, 0, 3, 1, 4)   # (3, N, h, T, d_k), a view
    heads, attn_cache = scaled_dot_product_attention_forward(qkv[0], qkv[1], qkv[2], mask)
    concat = heads.transpose(0, 2, 1, 3).reshape(N * T, D)            # (N T, D): heads side by side
    out = (concat @ Wo).reshape(N, T, Wo.shape[1])
    return out, (x2d, W_qkv, Wo, concat, attn_cache, (N, T, D, h, d_k))


def multi_head_attention_backward(dout, cache):
    """Gradients of multi_head_attention_forward, given dout = dL/dout (N, T, D_out).

    Returns a dict: dx (N, T, D), dWq, dWk, dWv (D, D), dWo (D, D_out); dtype of dout.
    """
    x2d, W_qkv, Wo, concat, attn_cache, (N, T, D, h, d_k) = cache
    dout2d = dout.reshape(N * T, Wo.shape[1])
    dWo = concat.T @ dout2d
    dheads = (dout2d @ Wo.T).reshape(N, T, h, d_k).transpose(0, 2, 1, 3)       # (N, h, T, d_k)
    dq, dk, dv = scaled_dot_product_attention_backward(dheads, attn_cache)
    dqkv = np.empty((N, T, 3, h, d_k), dtype=dq.dtype)
    dqkv_heads = dqkv.transpose(2, 0, 3, 1, 4)                       # the forward's layout, as a view
    dqkv_heads[0], dqkv_heads[1], dqkv_heads[2] = dq, dk, dv
    dqkv = dqkv.reshape(N * T, 3 * D)
    dW_qkv = x2d.T @ dqkv
    return {"dx": (dqkv @ W_qkv.T).reshape(N, T, D), "dWq": dW_qkv[:, :D], "dWk": dW_qkv[:, D:2 * D],
            "dWv": dW_qkv[:, 2 * D:], "dWo": dWo}


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
