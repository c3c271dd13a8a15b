"""Chapter 15a (language models, BLEU, the NumPy attention encoder-decoder): the attention decoder step's and the
whole encoder-decoder's backward against torch.autograd, BLEU by hand, n-gram normalisation, data preparation.

Everything tested here is imported from ``nndl_helpers.chapters.ch15a`` / ``ch15a_torch``, the modules exported
from the notebook's ``#@save`` cells, so the tests check the code the notebook teaches. The additive attention
the decoder step is built on is chapter 8a's (its own parity tests are in test_parity_ch08.py).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch15a import (DECODER_PARAMS, NGramLM, NumpySeq2Seq, SeqVocab, attention_decoder_step_backward,
                                         attention_decoder_step_forward, corpus_bleu, pad_ids, pad_pairs,
                                         prepare_translation, sentence_bleu, seq2seq_backward, seq2seq_batches,
                                         seq2seq_forward, split_by_source, tokenize_chars, tokenize_words)
from nndl_helpers.chapters.ch15a_torch import torch_pairs

TOL = 1e-6


def t_attention(q, K, V, Wq, Wk, w, mask=None):
    e = torch.tanh((q @ Wq)[:, None, :] + K @ Wk) @ w
    if mask is not None:
        e = e.masked_fill(~mask, float("-inf"))
    alpha = torch.softmax(e, dim=-1)
    return torch.einsum("ns,nsd->nd", alpha, V), alpha


def random_mask(rng, N, S):
    lengths = rng.integers(1, S + 1, size=N)
    lengths[0] = 1                                    # a one-token source: alpha = 1, de = 0
    return np.arange(S)[None, :] < lengths[:, None]


def t_gru_step(x, h,   Wx, Wh, bx, bh):
    H = h.shape[1]
    ax, ah = x @ Wx + bx, h @ Wh + bh
    r = torch.sigmoid(ax[:, :H] + ah[:, :H])
    z = torch.sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = torch.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    return (1 - z) * n + z * h


def t_decoder_step(x, h_prev, enc, mask, Wq, Wk, w, Wx, Wh, bx, bh, W_out, b_out):
    c, _ = t_attention(h_prev, enc, enc, Wq, Wk, w, mask)
    h = t_gru_step(torch.cat([x, c], 1), h_prev, Wx, Wh, bx, bh)
    return h @ W_out + b_out, h


def decoder_inputs(rng, N, S, E, H, A, V):
    inputs = {"x": rng.normal(size=(N, E)), "h_prev": rng.normal(size=(N, H)) * 0.5,
              "enc": rng.normal(size=(N, S, H)) * 0.5}
    params = {"Wq": rng.normal(size=(H, A)) * 0.4, "Wk": rng.normal(size=(H, A)) * 0.4, "w": rng.normal(size=A),
              "Wx": rng.normal(size=(E + H, 3 * H)) * 0.4, "Wh": rng.normal(size=(H, 3 * H)) * 0.4,
              "bx": rng.normal(size=3 * H) * 0.1, "bh": rng.normal(size=3 * H) * 0.1,
              "W_out": rng.normal(size=(H, V)) * 0.4, "b_out": rng.normal(size=V) * 0.1}
    return inputs, params


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1, 2), (2, 3, 4, 5, 6, 7), (4, 6, 3, 7, 5, 13)])  # N, S, E, H, A, V
@pytest.mark.parametrize("last_step", [False, True])
def test_attention_decoder_step_backward(shape, last_step):
    rng = np.random.default_rng(sum(shape))
    N, S = shape[:2]
    inputs, params = decoder_inputs(rng, *shape)
    mask = random_mask(rng, N, S)
    dlogits, dh = rng.normal(size=(N, shape[-1])), rng.normal(size=(N, shape[3]))
    logits, h, alpha, cache = attention_decoder_step_forward(**inputs, mask=mask, params=params)
    grads = attention_decoder_step_backward(dlogits, None if last_step else dh, cache)   # None: no later step
    assert set(grads) == set(DECODER_PARAMS) | {"x", "h_prev", "enc"}     # keyed like params + the array inputs

    def torch_fn(**t):
        z, h_t = t_decoder_step(mask=torch.as_tensor(mask), **t)
        return (z * torch.as_tensor(dlogits)).sum() + (0 if last_step else (h_t * torch.as_tensor(dh)).sum())

    all_inputs = {**inputs, **params}
    ref = nh.autograd_gradients(torch_fn, all_inputs, wrt=list(all_inputs))
    for k in all_inputs:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    assert (grads["enc"][~mask] == 0).all() and (alpha[~mask] == 0).all()
    z_ref, h_ref = t_decoder_step(mask=torch.as_tensor(mask), **{k: torch.as_tensor(v) for k, v in all_inputs.items()})
    assert np.allclose(logits, z_ref.numpy()) and np.allclose(h, h_ref.numpy())


def test_attention_decoder_step_rejects_an_empty_source():
    inputs, params = decoder_inputs(np.random.default_rng(0), 2, 3, 4, 5, 6, 7)
    mask = np.array([[True, True, False], [False, False, False]])
    with pytest.raises(ValueError, match="no real"):
        attention_decoder_step_forward(**inputs, mask=mask, params=params)


# ---- BLEU ------------------------------------------------------------------------------------------
tok = str.split


def test_bleu_by_hand():
    assert sentence_bleu(tok("the cat sat on the mat"), [tok("the cat sat on a mat")]) == pytest.approx((1 / 12) ** 0.25)
    assert sentence_bleu(tok("the the the the the the the"),
                         [tok("the cat is on the mat"), tok("there is a cat on the mat")], 1) == pytest.approx(2 / 7)
    assert sentence_bleu(tok("the cat"), [tok("the cat sat on the mat")], 2) == pytest.approx(math.exp(-2))
    assert sentence_bleu(tok("a dog"), [tok("the cat")]) == 0.0
    assert sentence_bleu([], [tok("the cat")]) == 0.0
    assert sentence_bleu(tok("there is a cat on the mat"),
                         [tok("the cat is on the mat"), tok("there is a cat on the mat")]) == pytest.approx(1.0)
    corpus = corpus_bleu([tok("the cat sat on the mat"), tok("the cat")],
                         [[tok("the cat sat on a mat")], [tok("the cat sat on the mat")]], 2)
    assert corpus["bleu"] == pytest.approx(math.exp(-0.5) * math.sqrt(7 / 8 * 4 / 6))
    assert corpus["c"] == 8 and corpus["r"] == 12


def test_bleu_closest_reference_length_and_smoothing():
    # c = 3; references of length 2 and 4 are equally close: the shorter one (2) is used, so BP = 1
    assert corpus_bleu([tok("a b c")], [[tok("a b"), tok("a b c d")]], 1)["r"] == 2
    assert sentence_bleu(tok("a b x y"), [tok("a b c d")]) == 0.0           # no 3-gram match
    assert 0 < sentence_bleu(tok("a b x y"), [tok("a b c d")], smooth=True) < 1
    with pytest.raises(ValueError):
        corpus_bleu([tok("a")], [])
    with pytest.raises(ValueError):
        sentence_bleu(tok("a"), [])


# ---- language models -------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,lambdas", [(1, 1.0, None), (2, 0.5, None), (3, 0.01, (0.2, 0.3, 0.5))])
def test_ngram_probabilities_sum_to_one(n, k, lambdas):
    rng = np.random.default_rng(n)
    V, bos, exclude = 8, 2, (1, 2)
    sentences = [list(rng.choice([0, 3, 4, 5, 6, 7], size=rng.integers(1, 6))) + [3] for _ in range(30)]
    lm = NGramLM(n, k, lambdas).fit(sentences, V, bos, exclude)
    predictable = [t for t in range(V) if t not in exclude]
    for context in ([], [4], [4, 5, 6], [7, 7]):
        assert sum(lm.prob(context, t) for t in predictable) == pytest.approx(1.0)
    assert lm.perplexity(sentences[:5]) > 1


def test_ngram_mle_and_errors():
    lm = NGramLM(2, k=0.0).fit([[4, 5, 3]], 6, 2, (1, 2))
    assert lm.prob([4], 5) == 1.0 and lm.prob([], 4) == 1.0
    assert math.isinf(lm.perplexity([[5, 4, 3]]))
    with pytest.raises(ValueError):
        NGramLM(0)
    with pytest.raises(ValueError):
        NGramLM(2, lambdas=(0.5, 0.6))


# ---- data ----------------------------------------------------------------------------------------------
def test_tokenizers_vocab_and_split():
    assert tokenize_words("Don't go!") == ["don't", "go", "!"]
    assert tokenize_words("Tom est là\u202f!") == ["tom", "est", "là", "!"]
    assert tokenize_chars("我很 好。") == ["我", "很", "好", "。"]
    vocab = SeqVocab([["a", "b"], ["b"]])
    assert vocab.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"] and vocab.encode(["zzz"]) == [0]
    assert vocab.tokens([4, 5, 3, 4]) == ["b", "a"]
    ids, lengths = pad_ids([["b"], ["a", "b"]], vocab, bos=True)
    assert ids.dtype == np.int64 and ids.tolist() == [[2, 4, 3, 1], [2, 5, 4, 3]] and lengths.tolist() == [3, 4]
    groups = {("s%d" % i,): [["t"], ["u"]] for i in range(20)}
    train, test = split_by_source(groups, 0.25, np.random.default_rng(0))
    assert len(test) == 5 and len(train) == 30
    assert not {tuple(s) for s, _ in train} & {tuple(s) for s, _ in test}
    with pytest.raises(ValueError):
        split_by_source(groups, 0.0, np.random.default_rng(0))




# ---- the whole NumPy encoder-decoder --------------------------------------------------------------------
def t_seq2seq_logits(src, src_len, tgt_in, src_embed, enc_Wx, enc_Wh, enc_bx, enc_bh, tgt_embed, **dec):
    src, tgt_in = torch.as_tensor(src), torch.as_tensor(tgt_in)
    x, h, enc = src_embed[src], torch.zeros(len(src), enc_Wh.shape[0], dtype=src_embed.dtype), []
    for t in range(src.shape[1]):
        h = t_gru_step(x[:, t], h, enc_Wx, enc_Wh, enc_bx, enc_bh)
        enc.append(h)
    enc, mask = torch.stack(enc, 1), src != 1
    h, logits = enc[torch.arange(len(src)), torch.as_tensor(src_len) - 1], []
    for t in range(tgt_in.shape[1]):
        z, h = t_decoder_step(tgt_embed[tgt_in[:, t]], h, enc, mask, **dec)
        logits.append(z)
    return torch.stack(logits, 1)


def random_batch(rng, N, S, T, Vs, Vt):
    src_len, tgt_len = rng.integers(1, S + 1, size=N), rng.integers(1, T + 1, size=N)
    src, tgt_in, tgt_out = np.ones((N, S), np.int64), np.ones((N, T), np.int64), np.ones((N, T), np.int64)
    for i in range(N):
        src[i, :src_len[i]] = rng.integers(3, Vs, size=src_len[i])
        y = rng.integers(4, Vt, size=tgt_len[i])
        tgt_in[i, :tgt_len[i]] = np.concatenate([[2], y[:-1]])
        tgt_out[i, :tgt_len[i]] = np.concatenate([y[:-1], [3]])
    return src, src_len, tgt_in, tgt_out


@pytest.mark.parametrize("shape", [(1, 1, 1, 2, 3), (3, 4, 3, 5, 6), (5, 6, 5, 4, 8)])   # N, S, T, E, H
def test_seq2seq_backward_matches_autograd(shape):
    N, S, T, E, H = shape
    rng = np.random.default_rng(sum(shape))
    model = NumpySeq2Seq(9, 11, E, H, attn_dim=H + 1, seed=1, dtype=np.float64)
    for v in model.params.values():
        v[...] = rng.normal(size=v.shape) * 0.5
    src, src_len, tgt_in, tgt_out = random_batch(rng, N, S, T, 9, 11)
    loss, grads = model.loss(src, src_len, tgt_in, tgt_out)
    assert set(grads) == set(model.params)

    def torch_fn(**p):
        logits = t_seq2seq_logits(src, src_len, tgt_in, **p)
        real = torch.as_tensor(tgt_out) != 1
        return F.cross_entropy(logits[real], torch.as_tensor(tgt_out)[real])

    ref = nh.autograd_gradients(torch_fn, model.params, wrt=list(model.params))
    for k in model.params:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    assert loss == pytest.approx(float(torch_fn(**{k: torch.as_tensor(v) for k, v in model.params.items()})))
    logits, cache = seq2seq_forward(src, src_len, tgt_in, model.params)
    dlogits = rng.normal(size=logits.shape)
    assert set(seq2seq_backward(dlogits, cache)) == set(model.params)


def test_seq2seq_padding_changes_nothing():
    rng = np.random.default_rng(3)
    model = NumpySeq2Seq(9, 11, 3, 4, seed=0, dtype=np.float64)
    batch = random_batch(rng, 4, 3, 4, 9, 11)
    loss, grads = model.loss(*batch)
    src, src_len, tgt_in, tgt_out = batch
    wider = (np.pad(src, ((0, 0), (0, 2)), constant_values=1), src_len,
             np.pad(tgt_in, ((0, 0), (0, 3)), constant_values=1), np.pad(tgt_out, ((0, 0), (0, 3)), constant_values=1))
    loss2, grads2 = model.loss(*wider)
    assert loss2 == pytest.approx(loss)
    for k in grads:
        assert np.allclose(grads[k], grads2[k]), k
    assert not grads["src_embed"][1].any() and not grads["tgt_embed"][1].any()   # <pad> rows get no gradient


def test_seq2seq_step_equals_forward():
    """Decoding with encode/step, fed the reference tokens, gives the teacher-forced logits."""
    rng = np.random.default_rng(4)
    model = NumpySeq2Seq(9, 11, 3, 4, seed=0, dtype=np.float64)
    src, src_len, tgt_in, _ = random_batch(rng, 3, 4, 5, 9, 11)
    logits = model(src, src_len, tgt_in)
    state = model.encode(src, src_len)
    for t in range(tgt_in.shape[1]):
        z, state = model.step(tgt_in[:, t], state)
        assert np.allclose(z, logits[:, t])
        assert np.allclose(state["alpha"].sum(1), 1) and (state["alpha"][src == 1] == 0).all()
    assert model.params["W_out"].dtype == np.float64
    assert NumpySeq2Seq(9, 11, 3, 4).params["W_out"].dtype == np.float32


def test_pad_pairs_batches_and_prepare():
    src_vocab, tgt_vocab = SeqVocab([["a", "b"], ["c"]]), SeqVocab([list("xyz")])
    pairs = [(["a", "b"], list("xy")), (["c"], list("xyz")), (["a"], ["z"])]
    src, src_len, tgt_in, tgt_out, tgt_len = data = pad_pairs(pairs, src_vocab, tgt_vocab)
    assert src.shape == (3, 3) and src_len.tolist() == [3, 2, 2] and tgt_len.tolist() == [3, 4, 2]
    assert (tgt_in[:, 0] == tgt_vocab.bos).all() and tgt_out[1, 3] == tgt_vocab.eos
    rows = [b for batch in seq2seq_batches(data, 2, np.random.default_rng(0)) for b in [batch]]
    assert sum(len(b[1]) for b in rows) == 3 and all(b[0].shape[1] == int(b[1].max()) for b in rows)
    t = torch_pairs(data, "cpu")
    assert all(torch.is_tensor(a) for a in t) and next(seq2seq_batches(t, 3))[0].shape == (3, 3)
    with pytest.raises(ValueError):
        pad_ids([], src_vocab)
    text = [(f"w{i} .", f"{i}。") for i in range(40)] + [("w0 .", "零。")]
    train, test, sv, tv = prepare_translation(text, tokenize_words, tokenize_chars, 5, 7, 0.25, 1)
    train2, test2, _, _ = prepare_translation(text, tokenize_words, tokenize_chars, 5, 7, 0.25, 1)
    assert train == train2 and test == test2 and len(test) == 10
    assert not {tuple(s) for s, _ in train} & {tuple(s) for s, _ in test}
    assert all(t in tv for _, t_ in train for t in t_)
