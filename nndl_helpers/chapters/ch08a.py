"""NumPy code taught in notebooks/08a_attention.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch03 import softmax
from nndl_helpers.chapters.ch04a import affine_backward, affine_forward, gelu_backward, gelu_forward
from nndl_helpers.chapters.ch07b import he_normal_init, layernorm_backward, layernorm_forward


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


def masked_softmax(e, mask=None):
    """Softmax over the last axis of scores e (N, S); mask (N, S) is True at real positions, False at padding.

    Padded positions get probability exactly 0. Raises ValueError when the mask's shape differs from e's
    or a row has no real position (nothing to attend to).
    """
    if mask is None:
        return softmax(e)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != e.shape:
        raise ValueError(f"mask has shape {mask.shape} but the scores have shape {e.shape}")
    if not mask.any(axis=-1).all():
        raise ValueError("a row of the mask has no real (True) position: an empty source cannot be attended to")
    return softmax(np.where(mask, e, -np.inf))


def additive_attention_forward(q, K, V, Wq, Wk, w, mask=None):
    """Additive (Bahdanau) attention, one query per row.

    Inputs:  q (N, Dq) queries (e.g. a decoder state); K (N, S, Dk) keys; V (N, S, Dv) values;
             Wq (Dq, A), Wk (Dk, A), w (A,) the scoring network; mask (N, S) bool, False = padded position.
    e_j = tanh(q Wq + k_j Wk) w,  alpha = masked softmax of e over j,  c = sum_j alpha_j v_j.
    Returns: c (N, Dv), alpha (N, S) the attention weights, and a cache for additive_attention_backward.
    """
    if q.ndim != 2 or K.ndim != 3 or V.ndim != 3 or K.shape[:2] != V.shape[:2] or K.shape[0] != q.shape[0]:
        raise ValueError(f"need q (N, Dq), K (N, S, Dk), V (N, S, Dv); got {q.shape}, {K.shape}, {V.shape}")
    Z = np.tanh((q @ Wq)[:, None, :] + K @ Wk)           # (N, S, A)
    alpha = masked_softmax(Z @ w, mask)                    # (N, S)
    c = np.einsum("ns,nsd->nd", alpha, V)
    return c, alpha, (q, K, V, Wq, Wk, w, Z, alpha)


def additive_attention_backward(dc, cache, dalpha=None):
    """Backward of additive_attention_forward, given dc = dL/dc (N, Dv) and optionally dL/dalpha (N, S)
    (for a loss on the weights themselves, e.g. a coverage penalty; None = 0).

    Returns: dq (N, Dq), dK (N, S, Dk), dV (N, S, Dv), dWq (Dq, A), dWk (Dk, A), dw (A,).
    Padded positions receive zero gradient (their alpha is 0).
    """
    q, K, V, Wq, Wk, w, Z, alpha = cache
    dV = alpha[:, :, None] * dc[:, None, :]
    da = np.einsum("nsd,nd->ns", V, dc) + (0 if dalpha is None else dalpha)
    de = alpha * (da - np.sum(alpha * da, axis=1, keepdims=True))      # softmax backward
    dw = np.einsum("nsa,ns->a", Z, de)
    du = de[:, :, None] * w * (1 - Z * Z)                               # at the tanh's input, (N, S, A)
    dWk = np.einsum("nsd,nsa->da", K, du)
    dK = du @ Wk.T
    du_q = du.sum(axis=1)                                               # q is broadcast over the S positions
    return du_q @ Wq.T, dK, dV, q.T @ du_q, dWk, dw


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
    Returns O (..., Tq, dv), the attention weights A (..., Tq, Tk) (rows sum to 1) and a cache.
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
    return S @ V, S, (Q, K, V, S, scale)


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
    K = x_kv Wk, V = x_kv Wv; the attention weights (N, h, Tq, Tk); and a cache.
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
    heads, weights, attn_cache = scaled_dot_product_attention_forward(q, kv[0], kv[1], mask)
    concat = heads.transpose(0, 2, 1, 3).reshape(N * Tq, D)           # (N Tq, D): heads side by side
    out = (concat @ Wo).reshape(N, Tq, Wo.shape[1])
    return out, weights, (x_q2d, x_kv2d, Wq, W_kv, attn_cache, concat, Wo, (N, Tq, Tk, D, D_kv, h, d_k))


def multi_head_cross_attention_backward(dout, cache):
    """Gradients of multi_head_cross_attention_forward, given dout = dL/dout (N, Tq, D_out).

    Returns dx_q (N, Tq, D), dx_kv (N, Tk, D_kv), dWq (D, D), dWk, dWv (D_kv, D), dWo (D, D_out).
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
    return ((dq2d @ Wq.T).reshape(N, Tq, D), (dkv @ W_kv.T).reshape(N, Tk, D_kv),
            x_q2d.T @ dq2d, dW_kv[:, :D], dW_kv[:, D:], dWo)


def multi_head_attention_forward(x, Wq, Wk, Wv, Wo, num_heads, mask=None):
    """Multi-head self-attention: multi_head_cross_attention_forward with x_q = x_kv = x.

    x (N, T, D); Wq, Wk, Wv (D, D); Wo (D, D_out); num_heads h divides D (head size d_k = D / h).
    mask: None or boolean broadcastable to (N, h, T, T), True = may attend: causal_mask(T) (T, T),
          padding_mask(lengths, T) (N, 1, 1, T), or their & .
    Returns out (N, T, D_out), the attention weights (N, h, T, T) and a cache.
    """
    if np.ndim(x) != 3:
        raise ValueError(f"x must be (N, T, D), got shape {np.shape(x)}")
    return multi_head_cross_attention_forward(x, x, Wq, Wk, Wv, Wo, num_heads, mask)


def multi_head_attention_backward(dout, cache):
    """Gradients of multi_head_attention_forward, given dout = dL/dout (N, T, D_out).

    Returns dx (N, T, D), dWq, dWk, dWv (D, D), dWo (D, D_out); dtype of dout.
    """
    dx_q, dx_kv, dWq, dWk, dWv, dWo = multi_head_cross_attention_backward(dout, cache)
    return dx_q + dx_kv, dWq, dWk, dWv, dWo          # x feeds the queries *and* the keys and values


def sinusoidal_positional_encoding(positions, D, base=10000.0):
    """Sinusoidal codes, one row per position: p[t, 2i] = sin(t / base^(2i/D)), p[t, 2i+1] = cos(same).

    positions: an int T (the positions 0, 1, ..., T-1) or a 1-D array of real positions (e.g. the timesteps
    of a diffusion model, chapter 13c). D: an even width. Returns a (number of positions, D) float64 array.
    """
    if np.ndim(positions) == 0:
        if int(positions) != positions or int(positions) < 1:
            raise ValueError(f"positions must be an int T >= 1 or a 1-D array of positions, got {positions!r}")
        t = np.arange(int(positions), dtype=np.float64)
    else:
        t = np.asarray(positions, dtype=np.float64)
        if t.ndim != 1 or t.size == 0:
            raise ValueError(f"positions must be an int T >= 1 or a 1-D array of positions, got shape {t.shape}")
    if int(D) != D or int(D) < 2 or D % 2:
        raise ValueError(f"D must be an even int >= 2, got D={D}")
    angles = t[:, None] / base ** (np.arange(0, int(D), 2)[None, :] / D)     # (T, D/2)
    pe = np.empty((t.size, int(D)))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angles), np.cos(angles)
    return pe


def position_wise_ffn_forward(x, W1, b1, W2, b2):
    """The Transformer's position-wise feed-forward network: GELU(x W1 + b1) W2 + b2 on every position separately.

    x (N, T, D); W1 (D, H), b1 (H,), W2 (H, D_out), b2 (D_out,). Returns out (N, T, D_out) and a cache.
    Chapter 4's affine and (tanh-)GELU layers on the N*T rows.
    """
    N, T, D = x.shape
    z1, fc1_cache = affine_forward(x.reshape(N * T, D), W1, b1)
    g, gelu_cache = gelu_forward(z1)
    z2, fc2_cache = affine_forward(g, W2, b2)
    return z2.reshape(N, T, -1), (fc1_cache, gelu_cache, fc2_cache, (N, T, D))


def position_wise_ffn_backward(dout, cache):
    """Gradients dx (N, T, D), dW1, db1, dW2, db2 of position_wise_ffn_forward, given dout (N, T, D_out)."""
    fc1_cache, gelu_cache, fc2_cache, (N, T, D) = cache
    dg, dW2, db2 = affine_backward(dout.reshape(N * T, -1), fc2_cache)
    dx, dW1, db1 = affine_backward(gelu_backward(dg, gelu_cache), fc1_cache)
    return dx.reshape(N, T, D), dW1, db1, dW2, db2


BLOCK_PARAMS = ("ln1_gamma", "ln1_beta", "Wq", "Wk", "Wv", "Wo", "ln2_gamma", "ln2_beta", "W1", "b1", "W2", "b2")


def init_transformer_block(D, rng, hidden=None, dtype=np.float64, residual_scale=1.0):
    """Parameters of one pre-LN block (dict over BLOCK_PARAMS): weights N(0, 1/fan_in) (chapter 7's
    he_normal_init with gain 1), LN gamma=1, biases 0.

    residual_scale multiplies Wo and W2, the layers that write into the residual stream (GPT-2 uses
    1/sqrt(2 * num_layers) so that deep stacks start close to the identity).
    """
    hidden = 4 * D if hidden is None else hidden
    w = lambda fan_in, fan_out, gain=1.0: he_normal_init(fan_in, fan_out, rng, gain=gain).astype(dtype)
    return {"ln1_gamma": np.ones(D, dtype), "ln1_beta": np.zeros(D, dtype),
            "Wq": w(D, D), "Wk": w(D, D), "Wv": w(D, D), "Wo": w(D, D, residual_scale),
            "ln2_gamma": np.ones(D, dtype), "ln2_beta": np.zeros(D, dtype),
            "W1": w(D, hidden), "b1": np.zeros(hidden, dtype), "W2": w(hidden, D, residual_scale),
            "b2": np.zeros(D, dtype)}


def transformer_block_forward(x, params, num_heads, mask=None, return_attention=False):
    """Pre-LN block: h = x + MHA(LN1(x)); y = h + W2 GELU(W1 LN2(h) + b1) + b2.

    x (N, T, D); params a dict over BLOCK_PARAMS; mask as in multi_head_attention_forward.
    Returns y (N, T, D) and a cache; with return_attention=True, (y, weights, cache), weights (N, h, T, T).
    """
    p = params
    a, ln1_cache = layernorm_forward(x, p["ln1_gamma"], p["ln1_beta"])
    att, weights, att_cache = multi_head_attention_forward(a, p["Wq"], p["Wk"], p["Wv"], p["Wo"], num_heads, mask)
    hid = x + att
    b, ln2_cache = layernorm_forward(hid, p["ln2_gamma"], p["ln2_beta"])
    f, ffn_cache = position_wise_ffn_forward(b, p["W1"], p["b1"], p["W2"], p["b2"])
    y = hid + f
    cache = (ln1_cache, att_cache, ln2_cache, ffn_cache)
    return (y, weights, cache) if return_attention else (y, cache)


def transformer_block_backward(dy, cache):
    """Gradients of transformer_block_forward: a dict keyed like params (BLOCK_PARAMS), plus "x" (N, T, D)."""
    ln1_cache, att_cache, ln2_cache, ffn_cache = cache
    grads = {}
    db, grads["W1"], grads["b1"], grads["W2"], grads["b2"] = position_wise_ffn_backward(dy, ffn_cache)
    dhid_ln, grads["ln2_gamma"], grads["ln2_beta"] = layernorm_backward(db, ln2_cache)
    dhid = dy + dhid_ln                                   # the residual passes dy straight through
    da, grads["Wq"], grads["Wk"], grads["Wv"], grads["Wo"] = multi_head_attention_backward(dhid, att_cache)
    dx_ln, grads["ln1_gamma"], grads["ln1_beta"] = layernorm_backward(da, ln1_cache)
    grads["x"] = dhid + dx_ln
    return grads
