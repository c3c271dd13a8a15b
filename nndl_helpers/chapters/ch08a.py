"""NumPy code taught in notebooks/08a_attention.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch03 import softmax, softmax_cross_entropy
from nndl_helpers.chapters.ch04 import affine_backward, affine_forward, gelu_backward, gelu_forward
from nndl_helpers.chapters.ch06 import Vocab
from nndl_helpers.chapters.ch07b import layernorm_backward, layernorm_forward


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
