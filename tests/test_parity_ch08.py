"""Chapter 8's NumPy attention and Transformer code against PyTorch.

Every backward in float64 against torch.autograd (relative error, CS231n, < 1e-6), masks included;
multi-head attention also against nn.MultiheadAttention with copied weights. The code under test is
imported from ``nndl_helpers.ch08``, exported from notebooks/08_attention_transformer.ipynb.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nndl_helpers import rel_error
from nndl_helpers.ch06 import Vocab
from nndl_helpers.ch08 import (
    BLOCK_PARAMS,
    NumpyTransformer,
    TinyGPT,
    TransformerBlock,
    additive_attention_scores,
    causal_mask,
    generate_text,
    init_transformer_block,
    multi_head_attention_backward,
    multi_head_attention_forward,
    nadaraya_watson,
    padding_mask,
    scaled_dot_product_attention_backward,
    scaled_dot_product_attention_forward,
    sinusoidal_positional_encoding,
    transformer_block_backward,
    transformer_block_forward,
)

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
    out, cache = scaled_dot_product_attention_forward(**arrays, mask=mask)
    grads = dict(zip("QKV", scaled_dot_product_attention_backward(dout, cache)))
    ref_out, ref = autograd(lambda Q, K, V: t_attention(Q, K, V, mask), arrays, dout)
    assert rel_error(out, ref_out) < TOL
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
    out, cache = multi_head_attention_forward(**arrays, num_heads=h, mask=mask)
    grads = multi_head_attention_backward(dout, cache)
    ref_out, ref = autograd(lambda x, Wq, Wk, Wv, Wo: t_mha(x, Wq, Wk, Wv, Wo, h, mask), arrays, dout)
    assert rel_error(out, ref_out) < TOL
    for k in arrays:
        assert rel_error(grads["d" + k], ref[k]) < TOL, k


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
    out, cache = multi_head_attention_forward(x, **Ws, num_heads=h, mask=mask)
    grads = multi_head_attention_backward(dout, cache)
    mha = nn.MultiheadAttention(D, h, bias=False, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([Ws["Wq"], Ws["Wk"], Ws["Wv"]], axis=1).T))
        mha.out_proj.weight.copy_(torch.tensor(Ws["Wo"].T))
    xt = torch.tensor(x, requires_grad=True)
    ref, _ = mha(xt, xt, xt, need_weights=False, key_padding_mask=torch.as_tensor(~padding_mask(lengths, T)[:, 0, 0]),
                 attn_mask=torch.as_tensor(~causal_mask(T)) if causal else None)
    ref.backward(torch.tensor(dout))
    assert rel_error(out, ref.detach().numpy()) < TOL
    assert rel_error(grads["dx"], xt.grad.numpy()) < TOL
    dW_in = mha.in_proj_weight.grad.numpy().T
    assert rel_error(np.concatenate([grads["dWq"], grads["dWk"], grads["dWv"]], axis=1), dW_in) < TOL
    assert rel_error(grads["dWo"], mha.out_proj.weight.grad.numpy().T) < TOL


def test_multi_head_attention_keeps_float32_and_is_stable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 8)).astype(np.float32)
    Ws = [(rng.normal(size=(8, 8)) * 30).astype(np.float32) for _ in range(4)]     # huge scores
    out, cache = multi_head_attention_forward(x, *Ws, 2, mask=causal_mask(6))
    grads = multi_head_attention_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads.values())


def test_a_wrong_backward_is_caught():
    """Dropping the 1/sqrt(d_k) from dS must fail the comparison: the tests can fail."""
    rng = np.random.default_rng(1)
    arrays = {"Q": rng.normal(size=(2, 4, 4)), "K": rng.normal(size=(2, 4, 4)), "V": rng.normal(size=(2, 4, 3))}
    dout = rng.normal(size=(2, 4, 3))
    _, cache = scaled_dot_product_attention_forward(**arrays)
    Q, K, V, A, scale = cache
    dQ, _, _ = scaled_dot_product_attention_backward(dout, (Q, K, V, A, 1.0))
    _, ref = autograd(t_attention, arrays, dout)
    assert rel_error(dQ, ref["Q"]) > 1e-2


# ----------------------------------------------------------------------------- block and model
def random_block(D, rng):
    p = init_transformer_block(D, rng)
    for k in p:
        if k.startswith("ln") or k.startswith("b"):
            p[k] = p[k] + 0.3 * rng.normal(size=p[k].shape)
    return p


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


# ----------------------------------------------------------------------------- the other functions
def test_sinusoidal_encoding_formula_and_relative_positions():
    pe = sinusoidal_positional_encoding(20, 8)
    for t in (0, 3, 19):
        for i in range(4):
            angle = t / 10000 ** (2 * i / 8)
            assert np.isclose(pe[t, 2 * i], math.sin(angle)) and np.isclose(pe[t, 2 * i + 1], math.cos(angle))
    gram = pe @ pe.T
    assert np.isclose(gram[2, 7], gram[10, 15]) and np.allclose(np.diag(gram), 4)


def test_self_attention_is_permutation_equivariant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6))
    Ws = [rng.normal(size=(6, 6)) for _ in range(4)]
    perm = rng.permutation(7)
    out = multi_head_attention_forward(x, *Ws, 3)[0]
    assert np.allclose(multi_head_attention_forward(x[:, perm], *Ws, 3)[0], out[:, perm])


def test_nadaraya_watson_and_additive_scores():
    keys = np.array([0.0, 1.0, 2.0])
    pred, w = nadaraya_watson(np.array([1.0, 10.0]), keys, np.array([5.0, 7.0, 9.0]), bandwidth=0.1)
    assert np.allclose(w.sum(1), 1) and np.isclose(pred[0], 7.0) and np.isclose(pred[1], 9.0)
    rng = np.random.default_rng(0)
    Q, K, Wq, Wk, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 2)), rng.normal(size=(4, 6)), \
        rng.normal(size=(2, 6)), rng.normal(size=6)
    s = additive_attention_scores(Q, K, Wq, Wk, v)
    assert s.shape == (3, 5) and np.isclose(s[1, 2], v @ np.tanh(Q[1] @ Wq + K[2] @ Wk))
    with pytest.raises(ValueError, match="bandwidth"):
        nadaraya_watson(keys, keys, keys, bandwidth=0)


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
