"""Chapter 8's NumPy attention and Transformer code against PyTorch.

Every backward in float64 against torch.autograd (relative error, CS231n, < 1e-6), masks included;
multi-head self- and cross-attention also against nn.MultiheadAttention, the decoder block against
nn.TransformerDecoderLayer, each with copied weights. The code under test is imported from
``nndl_helpers.chapters.ch08a`` / ``ch08b`` (and their ``_torch`` twins), exported from
notebooks/08a_attention.ipynb and notebooks/08b_transformer.ipynb.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nndl_helpers import rel_error
from nndl_helpers.chapters.ch06 import Vocab
from nndl_helpers.chapters.ch08a import (BLOCK_PARAMS, additive_attention_backward, additive_attention_forward,
                                         causal_mask, init_transformer_block, masked_softmax,
                                         multi_head_attention_backward, multi_head_attention_forward,
                                         multi_head_cross_attention_backward, multi_head_cross_attention_forward,
                                         nadaraya_watson, padding_mask, position_wise_ffn_backward,
                                         position_wise_ffn_forward, scaled_dot_product_attention_backward,
                                         scaled_dot_product_attention_forward, sinusoidal_positional_encoding,
                                         transformer_block_backward, transformer_block_forward)
from nndl_helpers.chapters.ch08b import (DECODER_BLOCK_PARAMS, NumpyEncoderDecoder, NumpyTransformer, decoder_backward,
                                         decoder_forward, embedding_backward, embedding_forward, encoder_backward,
                                         encoder_forward, greedy_decode, init_decoder_block, key_padding_mask,
                                         transformer_decoder_block_backward, transformer_decoder_block_forward)
from nndl_helpers.chapters.ch08a_torch import TransformerBlock
from nndl_helpers.chapters.ch08b_torch import TinyGPT, generate_text

TOL = 1e-6


# ----------------------------------------------------------------------------- torch references
def t_attention(Q, K, V, mask=None):
    S = Q @ K.transpose(-1, -2) / math.sqrt(Q.shape[-1])
    if mask is not None:
        S = S.masked_fill(~torch.as_tensor(mask), float("-inf"))
    return torch.softmax(S, dim=-1) @ V


def t_mha(x, Wq, Wk, Wv, Wo, h, mask=None):
    N, T, D = x.shape
    split = lambda t: t.reshape(N, T, h, D // h).transpose(1, 2)
    return t_attention(split(x @ Wq), split(x @ Wk), split(x @ Wv), mask).transpose(1, 2).reshape(N, T, D) @ Wo


def t_block(x, p, h, mask=None):
    D = x.shape[-1]
    a = F.layer_norm(x, (D,), p["ln1_gamma"], p["ln1_beta"], 1e-5)
    hid = x + t_mha(a, p["Wq"], p["Wk"], p["Wv"], p["Wo"], h, mask)
    b = F.layer_norm(hid, (D,), p["ln2_gamma"], p["ln2_beta"], 1e-5)
    return hid + F.gelu(b @ p["W1"] + p["b1"], approximate="tanh") @ p["W2"] + p["b2"]


def autograd(fn, arrays, dout):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    out = fn(**tensors)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), {k: t.grad.numpy() for k, t in tensors.items()}


def make_mask(kind, N, T, rng):
    lengths = rng.integers(1, T + 1, N)
    lengths[0] = T
    return {"none": None, "causal": causal_mask(T), "padding": padding_mask(lengths, T),
            "both": causal_mask(T) & padding_mask(lengths, T)}[kind]


SHAPES = [(2, 5, 6, 3), (1, 1, 4, 1), (3, 7, 8, 2), (2, 9, 10, 5)]     # N, T, D, heads
MASKS = ["none", "causal", "padding", "both"]


# ----------------------------------------------------------------------------- attention
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", [(2, 4, 5, 3, 2), (1, 1, 1, 1, 1), (3, 6, 6, 4, 7)])
def test_scaled_dot_product_attention_matches_autograd(shape, kind):
    N, Tq, Tk, dk, dv = shape
    rng = np.random.default_rng(sum(shape))
    arrays = {"Q": rng.normal(size=(N, Tq, dk)), "K": rng.normal(size=(N, Tk, dk)), "V": rng.normal(size=(N, Tk, dv))}
    mask = None
    if kind != "none" and Tq == Tk:
        mask = make_mask(kind, N, Tq, rng)
        mask = mask if mask.ndim < 4 else mask[:, 0]                     # (N, 1, T) for a single head
    dout = rng.normal(size=(N, Tq, dv))
    out, weights, cache = scaled_dot_product_attention_forward(**arrays, mask=mask)
    grads = dict(zip("QKV", scaled_dot_product_attention_backward(dout, cache)))
    ref_out, ref = autograd(lambda Q, K, V: t_attention(Q, K, V, mask), arrays, dout)
    assert rel_error(out, ref_out) < TOL
    assert weights.shape == (N, Tq, Tk) and np.allclose(weights.sum(-1), 1)
    assert np.allclose(weights @ arrays["V"], out)
    for k in "QKV":
        assert rel_error(grads[k], ref[k]) < TOL, k
    fused = F.scaled_dot_product_attention(*(torch.tensor(a) for a in arrays.values()),
                                           attn_mask=None if mask is None else torch.as_tensor(mask))
    assert rel_error(out, fused.numpy()) < TOL


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_multi_head_attention_matches_autograd(shape, kind):
    N, T, D, h = shape
    rng = np.random.default_rng(N * 100 + T)
    arrays = {"x": rng.normal(size=(N, T, D))} | {k: rng.normal(size=(D, D)) / math.sqrt(D)
                                                  for k in ("Wq", "Wk", "Wv", "Wo")}
    mask = make_mask(kind, N, T, rng)
    dout = rng.normal(size=(N, T, D))
    out, weights, cache = multi_head_attention_forward(**arrays, num_heads=h, mask=mask)
    grads = multi_head_attention_backward(dout, cache)
    assert isinstance(grads, tuple) and len(grads) == 5 and weights.shape == (N, h, T, T)
    grads = dict(zip(arrays, grads))                      # the forward's array arguments, in order
    ref_out, ref = autograd(lambda x, Wq, Wk, Wv, Wo: t_mha(x, Wq, Wk, Wv, Wo, h, mask), arrays, dout)
    assert rel_error(out, ref_out) < TOL
    for k in arrays:
        assert rel_error(grads[k], ref[k]) < TOL, k


def assert_matches_nn_mha(mha, ours, theirs, grads):
    """Output, weights and weight gradients against nn.MultiheadAttention (in_proj_weight = [Wq Wk Wv]^T)."""
    for a, t in zip(ours, theirs):
        assert rel_error(a, t.detach().numpy()) < TOL
    dW_in = mha.in_proj_weight.grad.numpy().T
    assert rel_error(np.concatenate([grads["dWq"], grads["dWk"], grads["dWv"]], axis=1), dW_in) < TOL
    assert rel_error(grads["dWo"], mha.out_proj.weight.grad.numpy().T) < TOL


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_multi_head_attention_matches_nn_multihead_attention(shape, causal):
    N, T, D, h = shape
    rng = np.random.default_rng(7 + T)
    x = rng.normal(size=(N, T, D))
    Ws = {k: rng.normal(size=(D, D)) / math.sqrt(D) for k in ("Wq", "Wk", "Wv", "Wo")}
    lengths = rng.integers(1, T + 1, N)
    mask = padding_mask(lengths, T) & (causal_mask(T) if causal else True)
    if not mask.any(-1).all():                       # causal + padding never hides a whole row; keep it simple
        pytest.skip("mask hides a row")
    dout = rng.normal(size=(N, T, D))
    out, weights, cache = multi_head_attention_forward(x, **Ws, num_heads=h, mask=mask)
    grads = dict(zip(["dx", "dWq", "dWk", "dWv", "dWo"], multi_head_attention_backward(dout, cache)))
    mha = nn.MultiheadAttention(D, h, bias=False, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([Ws["Wq"], Ws["Wk"], Ws["Wv"]], axis=1).T))
        mha.out_proj.weight.copy_(torch.tensor(Ws["Wo"].T))
    xt = torch.tensor(x, requires_grad=True)
    ref, ref_weights = mha(xt, xt, xt, key_padding_mask=torch.as_tensor(~padding_mask(lengths, T)[:, 0, 0]),
                           attn_mask=torch.as_tensor(~causal_mask(T)) if causal else None, average_attn_weights=False)
    ref.backward(torch.tensor(dout))
    assert_matches_nn_mha(mha, (out, weights), (ref, ref_weights), grads)
    assert rel_error(grads["dx"], xt.grad.numpy()) < TOL


def test_multi_head_attention_keeps_float32_and_is_stable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 8)).astype(np.float32)
    Ws = [(rng.normal(size=(8, 8)) * 30).astype(np.float32) for _ in range(4)]     # huge scores
    out, weights, cache = multi_head_attention_forward(x, *Ws, 2, mask=causal_mask(6))
    grads = multi_head_attention_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and weights.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads)


def test_a_wrong_backward_is_caught():
    """Dropping the 1/sqrt(d_k) from dS must fail the comparison: the tests can fail."""
    rng = np.random.default_rng(1)
    arrays = {"Q": rng.normal(size=(2, 4, 4)), "K": rng.normal(size=(2, 4, 4)), "V": rng.normal(size=(2, 4, 3))}
    dout = rng.normal(size=(2, 4, 3))
    _, _, cache = scaled_dot_product_attention_forward(**arrays)
    Q, K, V, A, scale = cache
    dQ, _, _ = scaled_dot_product_attention_backward(dout, (Q, K, V, A, 1.0))
    _, ref = autograd(t_attention, arrays, dout)
    assert rel_error(dQ, ref["Q"]) > 1e-2


# ----------------------------------------------------------------------------- block and model
def perturbed(p, rng):
    """Non-trivial LayerNorm and bias values, so that their gradients are tested too."""
    return {k: v + 0.3 * rng.normal(size=v.shape) if k.startswith(("ln", "b")) else v for k, v in p.items()}


def random_block(D, rng):
    return perturbed(init_transformer_block(D, rng), rng)


@pytest.mark.parametrize("shape", [(2, 5, 6, 24, 6), (1, 1, 3, 4, 2)])          # N, T, D, H, D_out
def test_position_wise_ffn_matches_autograd(shape):
    N, T, D, H, D_out = shape
    rng = np.random.default_rng(sum(shape))
    arrays = {"x": rng.normal(size=(N, T, D)), "W1": rng.normal(size=(D, H)) / math.sqrt(D), "b1": rng.normal(size=H),
              "W2": rng.normal(size=(H, D_out)) / math.sqrt(H), "b2": rng.normal(size=D_out)}
    dout = rng.normal(size=(N, T, D_out))
    out, cache = position_wise_ffn_forward(**arrays)
    grads = position_wise_ffn_backward(dout, cache)
    ref_out, ref = autograd(lambda x, W1, b1, W2, b2: F.gelu(x @ W1 + b1, approximate="tanh") @ W2 + b2, arrays, dout)
    assert rel_error(out, ref_out) < TOL and len(grads) == len(arrays)
    for k, g in zip(arrays, grads):
        assert g.shape == arrays[k].shape and rel_error(g, ref[k]) < TOL, k


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 3, 4, 2), (3, 4, 8, 4)])
def test_transformer_block_matches_autograd(shape, kind):
    N, T, D, h = shape
    rng = np.random.default_rng(T * D)
    p = random_block(D, rng)
    x = rng.normal(size=(N, T, D))
    mask = make_mask(kind, N, T, rng)
    dout = rng.normal(size=(N, T, D))
    y, cache = transformer_block_forward(x, p, h, mask)
    grads = transformer_block_backward(dout, cache)
    ref_y, ref = autograd(lambda x, **q: t_block(x, q, h, mask), {"x": x} | p, dout)
    assert rel_error(y, ref_y) < TOL
    y2, weights, _ = transformer_block_forward(x, p, h, mask, return_attention=True)
    assert np.array_equal(y, y2) and weights.shape == (N, h, T, T) and np.allclose(weights.sum(-1), 1)
    assert set(grads) == set(BLOCK_PARAMS) | {"x"}
    for k in ref:
        assert rel_error(grads[k], ref[k]) < TOL, k


@pytest.mark.parametrize("causal", [False, True])
def test_torch_transformer_block_equals_numpy_block(causal):
    rng = np.random.default_rng(3)
    p = random_block(8, rng)
    x = rng.normal(size=(2, 5, 8))
    y, _ = transformer_block_forward(x, p, 2, causal_mask(5) if causal else None)
    module = TransformerBlock(8, 2).double().load_numpy(p).eval()
    assert rel_error(y, module(torch.tensor(x), causal=causal).detach().numpy()) < TOL
    module.keep_attention = True                      # the explicit path gives the same output
    assert rel_error(y, module(torch.tensor(x), causal=causal).detach().numpy()) < TOL
    assert torch.allclose(module.attention.sum(-1), torch.ones(1, dtype=torch.float32))


def torch_model_loss(model, X, Y):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    N, T = X.shape
    h = t["tok_emb"][torch.as_tensor(X)] + t["pos_emb"][:T]
    mask = causal_mask(T) if model.causal else None
    for layer in range(model.num_layers):
        h = t_block(h, {k: t[f"block{layer}.{k}"] for k in BLOCK_PARAMS}, model.num_heads, mask)
    a = F.layer_norm(h, (h.shape[-1],), t["lnf_gamma"], t["lnf_beta"], 1e-5)
    logits = a @ t["W_out"] + t["b_out"]
    loss = F.cross_entropy(logits.reshape(N * T, -1), torch.as_tensor(Y).reshape(-1))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 5, 6])
def test_numpy_transformer_loss_matches_autograd(causal, T):
    rng = np.random.default_rng(T)
    model = NumpyTransformer(7, 6, 8, 2, 2, rng, causal=causal, dtype=np.float64)
    X, Y = rng.integers(0, 7, (3, T)), rng.integers(0, 7, (3, T))
    X[0, :2] = 4                                  # a repeated token: its embedding gradient accumulates
    loss, grads = model.loss(X, Y)
    ref_loss, ref = torch_model_loss(model, X, Y)
    assert abs(loss - ref_loss) < 1e-10
    assert set(grads) == set(model.params)
    for k in ref:
        assert rel_error(grads[k], ref[k]) < TOL, k


def test_numpy_transformer_returns_its_attention_weights():
    model = NumpyTransformer(7, 6, 8, 2, 2, np.random.default_rng(0), causal=True, dtype=np.float64)
    X = np.random.default_rng(1).integers(0, 7, (3, 5))
    logits, weights, _ = model.forward(X, return_attention=True)
    assert np.array_equal(logits, model(X)) and len(weights) == 2
    assert all(w.shape == (3, 2, 5, 5) and np.all(np.triu(w, 1) == 0) for w in weights)


@pytest.mark.parametrize("T", [1, 4])
def test_embedding_matches_autograd(T):
    rng = np.random.default_rng(T)
    ids = rng.integers(0, 5, (3, T))
    ids[0, 0] = ids[1, -1] = 2                                  # a repeated token accumulates
    arrays = {"tok_emb": rng.normal(size=(5, 4)), "pos_emb": rng.normal(size=(6, 4))}
    dout = rng.normal(size=(3, T, 4))
    h, cache = embedding_forward(ids, **arrays)
    grads = dict(zip(arrays, embedding_backward(dout, cache)))
    ref_h, ref = autograd(lambda tok_emb, pos_emb: tok_emb[torch.as_tensor(ids)] + pos_emb[:T], arrays, dout)
    assert rel_error(h, ref_h) < TOL
    for k in arrays:
        assert grads[k].shape == arrays[k].shape and rel_error(grads[k], ref[k]) < TOL, k


# ----------------------------------------------------------------------------- the other functions
def test_sinusoidal_encoding_formula_and_relative_positions():
    pe = sinusoidal_positional_encoding(20, 8)
    assert pe.shape == (20, 8) and pe.dtype == np.float64
    for t in (0, 3, 19):
        for i in range(4):
            angle = t / 10000 ** (2 * i / 8)
            assert np.isclose(pe[t, 2 * i], math.sin(angle)) and np.isclose(pe[t, 2 * i + 1], math.cos(angle))
    gram = pe @ pe.T
    assert np.isclose(gram[2, 7], gram[10, 15]) and np.allclose(np.diag(gram), 4)


def test_sinusoidal_encoding_of_real_positions():
    """Diffusion timesteps and other real positions: the same formula, one row per position."""
    table = sinusoidal_positional_encoding(50, 16, base=100.0)
    assert np.array_equal(sinusoidal_positional_encoding(np.arange(50), 16, base=100.0), table)
    assert np.array_equal(sinusoidal_positional_encoding([7, 3, 3], 16, base=100.0), table[[7, 3, 3]])
    pe = sinusoidal_positional_encoding(np.array([0.5, 999.0]), 6)
    assert pe.shape == (2, 6) and np.isclose(pe[0, 0], math.sin(0.5)) and np.isclose(pe[1, 3], math.cos(999 / 10000 ** (2 / 6)))
    for bad in (0, 2.5, np.zeros((2, 2)), []):
        with pytest.raises(ValueError, match="positions"):
            sinusoidal_positional_encoding(bad, 8)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positional_encoding(4, 7)


def test_self_attention_is_permutation_equivariant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6))
    Ws = [rng.normal(size=(6, 6)) for _ in range(4)]
    perm = rng.permutation(7)
    out = multi_head_attention_forward(x, *Ws, 3)[0]
    assert np.allclose(multi_head_attention_forward(x[:, perm], *Ws, 3)[0], out[:, perm])


def test_nadaraya_watson():
    keys = np.array([0.0, 1.0, 2.0])
    pred, w = nadaraya_watson(np.array([1.0, 10.0]), keys, np.array([5.0, 7.0, 9.0]), bandwidth=0.1)
    assert np.allclose(w.sum(1), 1) and np.isclose(pred[0], 7.0) and np.isclose(pred[1], 9.0)
    with pytest.raises(ValueError, match="bandwidth"):
        nadaraya_watson(keys, keys, keys, bandwidth=0)


def t_additive(q, K, V, Wq, Wk, w, mask=None):
    e = torch.tanh((q @ Wq)[:, None, :] + K @ Wk) @ w
    if mask is not None:
        e = e.masked_fill(~torch.as_tensor(mask), float("-inf"))
    alpha = torch.softmax(e, dim=-1)
    return torch.einsum("ns,nsd->nd", alpha, V), alpha


@pytest.mark.parametrize("with_dalpha", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 4, 6, 7, 8), (1, 1, 2, 2, 2, 3)])         # N, S, Dq, Dk, Dv, A
def test_additive_attention_matches_autograd(shape, masked, with_dalpha):
    N, S, Dq, Dk, Dv, A = shape
    rng = np.random.default_rng(sum(shape) + 2 * masked + with_dalpha)
    arrays = {"q": rng.normal(size=(N, Dq)), "K": rng.normal(size=(N, S, Dk)), "V": rng.normal(size=(N, S, Dv)),
              "Wq": 0.5 * rng.normal(size=(Dq, A)), "Wk": 0.5 * rng.normal(size=(Dk, A)), "w": rng.normal(size=A)}
    mask = padding_mask(np.maximum(1, S - np.arange(N)), S)[:, 0, 0] if masked else None       # (N, S)
    dc, dalpha = rng.normal(size=(N, Dv)), rng.normal(size=(N, S)) if with_dalpha else None
    c, alpha, cache = additive_attention_forward(**arrays, mask=mask)
    grads = additive_attention_backward(dc, cache, dalpha)
    assert isinstance(grads, tuple) and len(grads) == 6
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    ref_c, ref_alpha = t_additive(**tensors, mask=mask)
    loss = (ref_c * torch.tensor(dc)).sum() + (0 if dalpha is None else (ref_alpha * torch.tensor(dalpha)).sum())
    loss.backward()
    assert rel_error(c, ref_c.detach().numpy()) < TOL and rel_error(alpha, ref_alpha.detach().numpy()) < TOL
    for k, g in zip(arrays, grads):
        assert g.shape == arrays[k].shape and rel_error(g, tensors[k].grad.numpy()) < TOL, k
    if masked:
        assert np.all(alpha[~mask] == 0) and np.all(grads[1][~mask] == 0) and np.all(grads[2][~mask] == 0)


def test_masked_softmax_and_additive_attention_errors():
    e = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    p = masked_softmax(e, np.array([[True, True, False], [True, False, False]]))
    assert np.allclose(p[0, :2], np.exp([1, 2]) / np.exp([1, 2]).sum()) and np.array_equal(p[1], [1.0, 0.0, 0.0])
    assert np.allclose(masked_softmax(e).sum(1), 1)
    with pytest.raises(ValueError, match="no real"):
        masked_softmax(e, np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="shape"):
        masked_softmax(e, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"need q \(N, Dq\)"):
        additive_attention_forward(np.zeros((2, 3)), np.zeros((2, 4, 5)), np.zeros((2, 3, 5)), np.zeros((3, 6)),
                                   np.zeros((5, 6)), np.zeros(6))


def test_masks():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert padding_mask([2, 3], 3)[:, 0, 0].tolist() == [[True, True, False], [True, True, True]]
    for bad in ([0, 2], [4]):
        with pytest.raises(ValueError, match="lengths"):
            padding_mask(bad, 3)


def test_bad_inputs_raise_clear_errors():
    x = np.zeros((2, 4, 6))
    with pytest.raises(ValueError, match="divide"):
        multi_head_attention_forward(x, *[np.eye(6)] * 4, num_heads=4)
    with pytest.raises(ValueError, match="broadcast"):
        multi_head_attention_forward(x, *[np.eye(6)] * 4, num_heads=2, mask=causal_mask(5))
    with pytest.raises(ValueError, match="boolean"):
        multi_head_attention_forward(x, *[np.eye(6)] * 4, num_heads=2, mask=np.ones((4, 4)))
    with pytest.raises(ValueError, match="hides every key"):
        multi_head_attention_forward(x, *[np.eye(6)] * 4, num_heads=2, mask=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        multi_head_attention_forward(np.zeros((4, 6)), *[np.eye(6)] * 4, num_heads=2)
    model = NumpyTransformer(5, 4, 8, 2, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_len"):
        model.forward(np.zeros((1, 5), dtype=int))
    with pytest.raises(ValueError, match="token ids"):
        model.forward(np.full((1, 3), 5))


def test_tiny_gpt_generation_and_its_errors():
    torch.manual_seed(0)
    vocab = Vocab("hello world")
    gpt = TinyGPT(len(vocab), context=8, d_model=16, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="empty"):
        generate_text(gpt, vocab, "", 5)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        generate_text(gpt, vocab, "hello?", 5)
    with pytest.raises(ValueError, match="temperature"):
        generate_text(gpt, vocab, "he", 5, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        generate_text(gpt, vocab, "he", 5, top_k=0)
    with pytest.raises(ValueError, match="longer than the model's context"):
        gpt(torch.zeros(1, 9, dtype=torch.long))
    long_prompt = "hello world hello world"                     # longer than the context: cropped
    out = generate_text(gpt, vocab, long_prompt, 6, temperature=0)
    assert out.startswith(long_prompt) and len(out) == len(long_prompt) + 6 and "<unk>" not in out
    assert generate_text(gpt, vocab, "he", 6, temperature=1.0, top_k=1) == generate_text(gpt, vocab, "he", 6, 0)
    assert generate_text(gpt, vocab, "he", 6, seed=3) == generate_text(gpt, vocab, "he", 6, seed=3)


# ----------------------------------------------------------------------------- cross-attention and the decoder
def t_cross(x_q, x_kv, Wq, Wk, Wv, Wo, h, mask=None):
    (N, Tq, D), Tk = x_q.shape, x_kv.shape[1]
    split = lambda t, T: t.reshape(N, T, h, D // h).transpose(1, 2)
    heads = t_attention(split(x_q @ Wq, Tq), split(x_kv @ Wk, Tk), split(x_kv @ Wv, Tk), mask)
    return heads.transpose(1, 2).reshape(N, Tq, D) @ Wo


def t_decoder_block(x, memory, p, h, memory_mask=None):
    D, T = x.shape[-1], x.shape[1]
    ln = lambda z, i: F.layer_norm(z, (D,), p[f"ln{i}_gamma"], p[f"ln{i}_beta"], 1e-5)
    h1 = x + t_mha(ln(x, 1), p["Wq"], p["Wk"], p["Wv"], p["Wo"], h, causal_mask(T))
    h2 = h1 + t_cross(ln(h1, 2), memory, p["cross_Wq"], p["cross_Wk"], p["cross_Wv"], p["cross_Wo"], h, memory_mask)
    return h2 + F.gelu(ln(h2, 3) @ p["W1"] + p["b1"], approximate="tanh") @ p["W2"] + p["b2"]


def make_cross_mask(kind, N, Tq, Tk, rng):
    lengths = rng.integers(1, Tk + 1, N)
    lengths[0] = Tk
    if kind == "none":
        return None
    if kind == "padding":
        return padding_mask(lengths, Tk)                                  # (N, 1, 1, Tk)
    free = rng.random((Tq, Tk)) < 0.5                                     # an arbitrary (Tq, Tk) pattern
    free[:, 0] = True                                # key 0 is never padding, so no query loses every key
    if kind == "free":
        return free
    return padding_mask(lengths, Tk) & free                               # (N, 1, Tq, Tk)


CROSS_SHAPES = [(2, 3, 5, 6, 3, 6), (1, 1, 4, 4, 1, 4), (3, 6, 2, 8, 2, 8), (2, 4, 7, 6, 2, 5)]   # N Tq Tk D h D_kv
CROSS_MASKS = ["none", "padding", "free", "both"]


def random_cross_inputs(shape, rng):
    N, Tq, Tk, D, h, D_kv = shape
    return {"x_q": rng.normal(size=(N, Tq, D)), "x_kv": rng.normal(size=(N, Tk, D_kv)),
            "Wq": rng.normal(size=(D, D)) / math.sqrt(D), "Wk": rng.normal(size=(D_kv, D)) / math.sqrt(D_kv),
            "Wv": rng.normal(size=(D_kv, D)) / math.sqrt(D_kv), "Wo": rng.normal(size=(D, D)) / math.sqrt(D)}


@pytest.mark.parametrize("kind", CROSS_MASKS)
@pytest.mark.parametrize("shape", CROSS_SHAPES)
def test_cross_attention_matches_autograd(shape, kind):
    N, Tq, Tk, D, h, D_kv = shape
    rng = np.random.default_rng(sum(shape) + len(kind))
    arrays = random_cross_inputs(shape, rng)
    mask = make_cross_mask(kind, N, Tq, Tk, rng)
    dout = rng.normal(size=(N, Tq, D))
    out, weights, cache = multi_head_cross_attention_forward(**arrays, num_heads=h, mask=mask)
    grads = multi_head_cross_attention_backward(dout, cache)
    ref_out, ref = autograd(lambda **t: t_cross(**t, h=h, mask=mask), arrays, dout)
    assert out.shape == (N, Tq, D) and weights.shape == (N, h, Tq, Tk)
    assert rel_error(out, ref_out) < TOL
    assert isinstance(grads, tuple) and len(grads) == len(arrays)       # the forward's array arguments, in order
    for k, g in zip(arrays, grads):
        assert g.shape == arrays[k].shape
        assert rel_error(g, ref[k]) < TOL, k


@pytest.mark.parametrize("shape", [(2, 3, 5, 6, 3), (1, 1, 4, 4, 1), (3, 6, 2, 8, 2), (2, 7, 7, 6, 2)])
def test_cross_attention_matches_nn_multihead_attention(shape):
    N, Tq, Tk, D, h = shape
    rng = np.random.default_rng(11 * Tq + Tk)
    arrays = random_cross_inputs((N, Tq, Tk, D, h, D), rng)
    lengths = rng.integers(1, Tk + 1, N)
    dout = rng.normal(size=(N, Tq, D))
    out, weights, cache = multi_head_cross_attention_forward(**arrays, num_heads=h, mask=padding_mask(lengths, Tk))
    grads = dict(zip(["dx_q", "dx_kv", "dWq", "dWk", "dWv", "dWo"], multi_head_cross_attention_backward(dout, cache)))
    mha = nn.MultiheadAttention(D, h, bias=False, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([arrays["Wq"], arrays["Wk"], arrays["Wv"]], axis=1).T))
        mha.out_proj.weight.copy_(torch.tensor(arrays["Wo"].T))
    q, kv = torch.tensor(arrays["x_q"], requires_grad=True), torch.tensor(arrays["x_kv"], requires_grad=True)
    ref, ref_weights = mha(q, kv, kv, key_padding_mask=torch.as_tensor(~padding_mask(lengths, Tk)[:, 0, 0]),
                       average_attn_weights=False)
    ref.backward(torch.tensor(dout))
    assert_matches_nn_mha(mha, (out, weights), (ref, ref_weights), grads)
    assert rel_error(grads["dx_q"], q.grad.numpy()) < TOL
    assert rel_error(grads["dx_kv"], kv.grad.numpy()) < TOL


def test_padded_keys_get_exactly_zero_weight_and_gradient():
    rng = np.random.default_rng(4)
    arrays = random_cross_inputs((3, 4, 6, 8, 2, 8), rng)
    lengths = [6, 2, 4]
    out, weights, cache = multi_head_cross_attention_forward(**arrays, num_heads=2, mask=padding_mask(lengths, 6))
    _, dx_kv, *_ = multi_head_cross_attention_backward(rng.normal(size=out.shape), cache)
    for n, k in enumerate(lengths):
        assert np.all(weights[n, :, :, k:] == 0) and np.all(dx_kv[n, k:] == 0)
        assert np.all(np.abs(dx_kv[n, :k]).sum(-1) > 0)
    assert np.allclose(weights.sum(-1), 1)
    # changing what sits in the padding changes nothing
    poked = arrays["x_kv"].copy()
    poked[1, 2:] = 1e3
    out2, _, _ = multi_head_cross_attention_forward(arrays["x_q"], poked, arrays["Wq"], arrays["Wk"], arrays["Wv"],
                                                 arrays["Wo"], 2, mask=padding_mask(lengths, 6))
    assert np.array_equal(out, out2)


def test_self_attention_is_cross_attention_with_the_same_input():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 6))
    Ws = [rng.normal(size=(6, 6)) for _ in range(4)]
    dout = rng.normal(size=(2, 5, 6))
    out, weights, cache = multi_head_attention_forward(x, *Ws, 3, mask=causal_mask(5))
    out_c, weights_c, cache_c = multi_head_cross_attention_forward(x, x, *Ws, 3, mask=causal_mask(5))
    assert np.array_equal(out, out_c) and np.array_equal(weights, weights_c)
    g, gc = multi_head_attention_backward(dout, cache), multi_head_cross_attention_backward(dout, cache_c)
    assert len(g) == 5 and len(gc) == 6
    assert np.allclose(g[0], gc[0] + gc[1]) and all(np.array_equal(a, b) for a, b in zip(g[1:], gc[2:]))


def test_a_self_attention_backward_missing_the_key_value_path_is_caught():
    """Self-attention's dx must add the query path and the key/value path; dropping one must fail the check."""
    rng = np.random.default_rng(6)
    arrays = {"x": rng.normal(size=(2, 4, 6))} | {k: rng.normal(size=(6, 6)) / math.sqrt(6) for k in ("Wq", "Wk", "Wv", "Wo")}
    dout = rng.normal(size=(2, 4, 6))
    _, _, cache = multi_head_attention_forward(**arrays, num_heads=2)
    broken = multi_head_cross_attention_backward(dout, cache)[0]                # dx_q alone
    _, ref = autograd(lambda x, Wq, Wk, Wv, Wo: t_mha(x, Wq, Wk, Wv, Wo, 2), arrays, dout)
    assert rel_error(broken, ref["x"]) > 1e-2
    assert rel_error(multi_head_attention_backward(dout, cache)[0], ref["x"]) < TOL


def random_decoder_block(D, rng):
    return perturbed(init_decoder_block(D, rng), rng)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("shape", [(2, 4, 6, 8, 2), (1, 1, 3, 4, 2), (3, 5, 2, 6, 3)])     # N, T, S, D, heads
def test_decoder_block_matches_autograd(shape, padded):
    N, T, S, D, h = shape
    rng = np.random.default_rng(T * S + D + padded)
    p = random_decoder_block(D, rng)
    x, memory = rng.normal(size=(N, T, D)), rng.normal(size=(N, S, D))
    lengths = rng.integers(1, S + 1, N)
    mask = padding_mask(lengths, S) if padded else None
    dout = rng.normal(size=(N, T, D))
    y, cache = transformer_decoder_block_forward(x, memory, p, h, mask)
    grads = transformer_decoder_block_backward(dout, cache)
    ref_y, ref = autograd(lambda x, memory, **q: t_decoder_block(x, memory, q, h, mask), {"x": x, "memory": memory} | p,
                          dout)
    assert rel_error(y, ref_y) < TOL
    assert set(grads) == set(DECODER_BLOCK_PARAMS) | {"x", "memory"}
    for k in ref:
        assert rel_error(grads[k], ref[k]) < TOL, k
    if padded:
        for n, k in enumerate(lengths):
            assert np.all(grads["memory"][n, k:] == 0)
    y2, weights, _ = transformer_decoder_block_forward(x, memory, p, h, mask, return_attention=True)
    assert np.array_equal(y, y2) and weights["self"].shape == (N, h, T, T) and weights["cross"].shape == (N, h, T, S)
    assert np.all(np.triu(weights["self"], 1) == 0) and np.allclose(weights["cross"].sum(-1), 1)


def nn_decoder_layer(p, h):
    D, hidden = p["W1"].shape
    layer = nn.TransformerDecoderLayer(D, h, hidden, dropout=0.0, batch_first=True, norm_first=True,
                                       activation=lambda z: F.gelu(z, approximate="tanh")).double()
    t = lambda a: torch.tensor(np.ascontiguousarray(a))
    with torch.no_grad():
        for attn, prefix in ((layer.self_attn, ""), (layer.multihead_attn, "cross_")):
            attn.in_proj_weight.copy_(t(np.concatenate([p[prefix + k] for k in ("Wq", "Wk", "Wv")], axis=1).T))
            attn.out_proj.weight.copy_(t(p[prefix + "Wo"].T))
            attn.in_proj_bias.zero_()
            attn.out_proj.bias.zero_()
        for i in (1, 2, 3):
            getattr(layer, f"norm{i}").weight.copy_(t(p[f"ln{i}_gamma"]))
            getattr(layer, f"norm{i}").bias.copy_(t(p[f"ln{i}_beta"]))
        layer.linear1.weight.copy_(t(p["W1"].T))
        layer.linear1.bias.copy_(t(p["b1"]))
        layer.linear2.weight.copy_(t(p["W2"].T))
        layer.linear2.bias.copy_(t(p["b2"]))
    return layer.eval()


@pytest.mark.parametrize("shape", [(2, 4, 6, 8, 2), (3, 7, 3, 6, 3)])
def test_decoder_block_matches_nn_transformer_decoder_layer(shape):
    N, T, S, D, h = shape
    rng = np.random.default_rng(T + S)
    p = random_decoder_block(D, rng)
    x, memory = rng.normal(size=(N, T, D)), rng.normal(size=(N, S, D))
    lengths, tgt_lengths = rng.integers(1, S + 1, N), rng.integers(1, T + 1, N)
    dout = rng.normal(size=(N, T, D))
    y, cache = transformer_decoder_block_forward(x, memory, p, h, padding_mask(lengths, S),
                                                 self_mask=padding_mask(tgt_lengths, T))     # padded targets too
    grads = transformer_decoder_block_backward(dout, cache)
    layer = nn_decoder_layer(p, h)
    xt, mt = torch.tensor(x, requires_grad=True), torch.tensor(memory, requires_grad=True)
    yt = layer(xt, mt, tgt_mask=torch.as_tensor(~causal_mask(T)),
               tgt_key_padding_mask=torch.as_tensor(~padding_mask(tgt_lengths, T)[:, 0, 0]),
               memory_key_padding_mask=torch.as_tensor(~padding_mask(lengths, S)[:, 0, 0]))
    yt.backward(torch.tensor(dout))
    assert rel_error(y, yt.detach().numpy()) < TOL
    assert rel_error(grads["x"], xt.grad.numpy()) < TOL
    assert rel_error(grads["memory"], mt.grad.numpy()) < TOL
    for ours, (module, transpose) in {"cross_Wo": (layer.multihead_attn.out_proj.weight, True),
                                      "Wo": (layer.self_attn.out_proj.weight, True),
                                      "W1": (layer.linear1.weight, True), "b2": (layer.linear2.bias, False),
                                      "ln1_gamma": (layer.norm1.weight, False), "ln3_beta": (layer.norm3.bias, False)
                                      }.items():
        ref = module.grad.numpy()
        assert rel_error(grads[ours], ref.T if transpose else ref) < TOL, ours
    W_in = layer.multihead_attn.in_proj_weight.grad.numpy().T
    assert rel_error(np.concatenate([grads["cross_Wq"], grads["cross_Wk"], grads["cross_Wv"]], axis=1), W_in) < TOL


def torch_encoder_decoder_loss(model, src, tgt_in, tgt_out):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    mask = (src != model.pad_id)[:, None, None, :]
    h = t["src_emb"][torch.as_tensor(src)] + t["src_pos"][:src.shape[1]]
    for layer in range(model.num_layers):
        h = t_block(h, {k: t[f"enc{layer}.{k}"] for k in BLOCK_PARAMS}, model.num_heads, mask)
    memory = F.layer_norm(h, (h.shape[-1],), t["enc_ln_gamma"], t["enc_ln_beta"], 1e-5)
    h = t["tgt_emb"][torch.as_tensor(tgt_in)] + t["tgt_pos"][:tgt_in.shape[1]]
    for layer in range(model.num_layers):
        h = t_decoder_block(h, memory, {k: t[f"dec{layer}.{k}"] for k in DECODER_BLOCK_PARAMS}, model.num_heads, mask)
    logits = F.layer_norm(h, (h.shape[-1],), t["dec_ln_gamma"], t["dec_ln_beta"], 1e-5) @ t["W_out"] + t["b_out"]
    loss = F.cross_entropy(logits.flatten(0, 1), torch.as_tensor(tgt_out).flatten(), ignore_index=model.pad_id)
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_decoder_loss_matches_autograd(num_layers):
    rng = np.random.default_rng(num_layers)
    model = NumpyEncoderDecoder(6, 7, 5, 4, 8, 2, num_layers, rng, pad_id=5, dtype=np.float64)
    src, tgt_in, tgt_out = rng.integers(0, 5, (3, 5)), rng.integers(0, 7, (3, 4)), rng.integers(0, 7, (3, 4))
    src[1, 2:] = 5
    src[0, 1] = src[0, 0]                          # a repeated token: its embedding gradient accumulates
    tgt_out[2, 3] = tgt_out[0, 1] = 5              # padded targets are left out of the loss
    loss, grads = model.loss(src, tgt_in, tgt_out)
    ref_loss, ref = torch_encoder_decoder_loss(model, src, tgt_in, tgt_out)
    assert abs(loss - ref_loss) < 1e-10
    assert set(grads) == set(model.params)
    for k in ref:
        assert rel_error(grads[k], ref[k]) < TOL, k
    assert np.all(grads["src_emb"][5] == 0)        # the padding token is never seen


def test_encoder_and_decoder_functions_match_autograd():
    rng = np.random.default_rng(3)
    model = NumpyEncoderDecoder(6, 7, 5, 4, 8, 2, 2, rng, pad_id=5, dtype=np.float64)
    src, tgt_in = rng.integers(0, 5, (3, 5)), rng.integers(0, 7, (3, 4))
    src[2, 3:] = 5
    mask = key_padding_mask(src, 5)
    memory, enc_cache = encoder_forward(src, model.params, 2, 2, mask)
    dmemory = rng.normal(size=memory.shape)
    enc_grads = encoder_backward(dmemory, enc_cache)
    logits, dec_cache = decoder_forward(tgt_in, memory, model.params, 2, 2, mask)
    dlogits = rng.normal(size=logits.shape)
    dec_grads = decoder_backward(dlogits, dec_cache)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    h = t["src_emb"][torch.as_tensor(src)] + t["src_pos"][:5]
    for layer in range(2):
        h = t_block(h, {k: t[f"enc{layer}.{k}"] for k in BLOCK_PARAMS}, 2, mask)
    t_memory = F.layer_norm(h, (8,), t["enc_ln_gamma"], t["enc_ln_beta"], 1e-5)
    mem_leaf = torch.tensor(memory, requires_grad=True)
    h = t["tgt_emb"][torch.as_tensor(tgt_in)] + t["tgt_pos"][:4]
    for layer in range(2):
        h = t_decoder_block(h, mem_leaf, {k: t[f"dec{layer}.{k}"] for k in DECODER_BLOCK_PARAMS}, 2, mask)
    t_logits = F.layer_norm(h, (8,), t["dec_ln_gamma"], t["dec_ln_beta"], 1e-5) @ t["W_out"] + t["b_out"]
    assert rel_error(memory, t_memory.detach().numpy()) < TOL and rel_error(logits, t_logits.detach().numpy()) < TOL
    ((t_memory * torch.tensor(dmemory)).sum() + (t_logits * torch.tensor(dlogits)).sum()).backward()
    assert set(enc_grads) | set(dec_grads) == set(model.params) | {"memory"}
    assert not set(enc_grads) & set(dec_grads)
    for k, g in (enc_grads | dec_grads).items():
        ref = mem_leaf.grad if k == "memory" else t[k].grad
        assert rel_error(g, ref.numpy()) < TOL, k


def test_greedy_decode_with_any_step_function():
    table = np.array([[0, 3, 1, 0], [0, 0, 2, 0], [0, 0, 0, 3], [0, 0, 0, 3]], float)   # 0 -> 1 -> 2 -> 3 (EOS)
    calls = []

    def step(tokens, state):                 # a bigram "model": the next token's scores depend on the last one
        calls.append(tokens.copy())
        return table[tokens] + state, state

    ids = greedy_decode(step, np.zeros(4), bos_id=0, eos_id=3, max_len=10, batch_size=2)
    assert ids.tolist() == [[1, 2, 3], [1, 2, 3]] and ids.dtype == np.int64      # stops once every row has EOS
    assert [c.tolist() for c in calls] == [[0, 0], [1, 1], [2, 2]]
    assert greedy_decode(step, np.zeros(4), 0, 3, max_len=2, batch_size=1).tolist() == [[1, 2]]
    early = lambda tokens, state: (np.where(np.arange(2)[:, None] == 0, table[tokens], table[[1, 0]][tokens * 0]), state)
    ids = greedy_decode(early, None, 0, 3, 5, 2)             # row 0 finishes first and then keeps emitting EOS
    assert ids[0].tolist() == [1, 2, 3, 3, 3] and ids[1].tolist() == [2, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="logits of shape"):
        greedy_decode(lambda tokens, state: (np.zeros(3), state), None, 0, 3, 5, 2)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(step, None, 0, 3, 0, 2)


def test_encoder_decoder_greedy_decoding_and_errors():
    model = NumpyEncoderDecoder(6, 8, 5, 4, 8, 2, 1, np.random.default_rng(0), pad_id=5)
    src = np.array([[0, 1, 2, 5, 5], [3, 4, 0, 1, 2]])
    tokens = model.greedy_decode(src, bos_id=6, eos_id=7, max_len=3)
    assert tokens.shape[0] == 2 and 1 <= tokens.shape[1] <= 3
    tgt_in = np.concatenate([np.full((2, 1), 6), tokens[:, :-1]], axis=1)
    logits, weights, _ = model.forward(src, tgt_in, return_attention=True)
    assert np.array_equal(logits, model(src, tgt_in))
    T = tgt_in.shape[1]
    for t in range(T):                                         # each token is the argmax after its prefix
        done = (tokens[:, :t] == 7).any(axis=1)
        assert np.array_equal(tokens[~done, t], logits[~done, t].argmax(-1))
    cross = weights["decoder"][-1]["cross"]
    assert cross.shape == (2, 2, T, 5) and np.all(cross[0, :, :, 3:] == 0) and np.allclose(cross.sum(-1), 1)
    assert len(weights["encoder"]) == 1 and weights["encoder"][0].shape == (2, 2, 5, 5)
    with pytest.raises(ValueError, match="padding only"):
        model.forward(np.full((1, 5), 5), np.full((1, 1), 6))
    with pytest.raises(ValueError, match="src must be"):
        model.forward(np.zeros((1, 6), dtype=int), np.full((1, 1), 6))
    with pytest.raises(ValueError, match="tgt_in token ids"):
        model.forward(np.zeros((1, 3), dtype=int), np.full((1, 2), 8))
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(src, 6, 7, max_len=5)
    with pytest.raises(ValueError, match="tgt_out"):
        model.loss(src, np.zeros((2, 3), dtype=int), np.zeros((2, 4), dtype=int))


def test_cross_attention_bad_inputs_raise_clear_errors():
    xq, xkv, eye = np.zeros((2, 3, 6)), np.zeros((2, 5, 6)), np.eye(6)
    with pytest.raises(ValueError, match="same batch size"):
        multi_head_cross_attention_forward(xq, np.zeros((3, 5, 6)), eye, eye, eye, eye, 2)
    with pytest.raises(ValueError, match="same batch size"):
        multi_head_cross_attention_forward(xq, np.zeros((5, 6)), eye, eye, eye, eye, 2)
    with pytest.raises(ValueError, match="divide"):
        multi_head_cross_attention_forward(xq, xkv, eye, eye, eye, eye, 4)
    with pytest.raises(ValueError, match=r"Wk and Wv \(4, 6\)"):
        multi_head_cross_attention_forward(xq, np.zeros((2, 5, 4)), eye, eye, eye, eye, 2)
    with pytest.raises(ValueError, match="key padding mask"):        # a (N, Tk) mask is not a key padding mask
        multi_head_cross_attention_forward(xq, xkv, eye, eye, eye, eye, 2, mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="broadcast"):               # a (Tk, Tq) mask: transposed
        multi_head_cross_attention_forward(xq, xkv, eye, eye, eye, eye, 2, mask=np.ones((5, 3), bool))
    with pytest.raises(ValueError, match="broadcast"):               # extra axes would silently grow the output
        multi_head_cross_attention_forward(xq, xkv, eye, eye, eye, eye, 2, mask=np.ones((4, 2, 1, 1, 5), bool))
    with pytest.raises(ValueError, match="hides every key"):
        multi_head_cross_attention_forward(xq, xkv, eye, eye, eye, eye, 2, mask=padding_mask([5, 5], 5) & False)
    p = init_decoder_block(6, np.random.default_rng(0))
    with pytest.raises(ValueError, match="memory"):
        transformer_decoder_block_forward(np.zeros((2, 3, 6)), np.zeros((2, 5, 4)), p, 2)
    with pytest.raises(ValueError, match="broadcast"):
        transformer_decoder_block_forward(np.zeros((2, 3, 6)), np.zeros((2, 5, 6)), p, 2,
                                          memory_mask=padding_mask([4, 2], 4))
