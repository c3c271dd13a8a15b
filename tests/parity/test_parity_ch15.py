"""Chapter 15 (sequence generation): the attention decoder step's backward against torch.autograd, BLEU by hand,
n-gram normalisation, greedy decoding (chapter 8b's loop around a PyTorch model), beam search against brute
force, sampling filters, and bad input.

Everything tested here is imported from ``nndl_helpers.chapters.ch15`` / ``ch15_torch``, the modules exported
from the notebook's ``#@save`` cells, so the tests check the code the notebook teaches. The additive attention
the decoder step is built on is chapter 8a's (its own parity tests are in test_parity_ch08.py).
"""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch08a import additive_attention_forward
from nndl_helpers.chapters.ch15 import DECODER_PARAMS, NGramLM, SeqVocab, attention_decoder_step_backward, attention_decoder_step_forward, corpus_bleu, filter_logits, sentence_bleu, split_by_source, tokenize_chars, tokenize_words
from nndl_helpers.chapters.ch15_torch import AdditiveAttention, AttentionSeq2Seq, TransformerSeq2Seq, ban_tokens, beam_search, pad_batch, sample_decode, seq2seq_greedy_decode, translate

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


def t_decoder_step(x, h_prev, enc, mask, Wq, Wk, w, Wx, Wh, bx, bh, W_out, b_out):
    c, _ = t_attention(h_prev, enc, enc, Wq, Wk, w, mask)
    H = h_prev.shape[1]
    ax, ah = torch.cat([x, c], 1) @ Wx + bx, h_prev @ Wh + bh
    r = torch.sigmoid(ax[:, :H] + ah[:, :H])
    z = torch.sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = torch.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    h = (1 - z) * n + z * h_prev
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


def test_torch_module_matches_numpy():
    rng = np.random.default_rng(1)
    att = AdditiveAttention(3, 4, 5).double()
    q, K = rng.normal(size=(2, 3)), rng.normal(size=(2, 6, 4))
    mask = np.array([[1] * 6, [1, 1, 0, 0, 0, 0]], dtype=bool)
    c_t, a_t = att(torch.as_tensor(q), torch.as_tensor(K), torch.as_tensor(K), torch.as_tensor(mask))
    c, a, _ = additive_attention_forward(q, K, K, att.W_q.weight.detach().numpy().T,
                                         att.W_k.weight.detach().numpy().T, att.w.weight.detach().numpy()[0], mask)
    assert np.allclose(c, c_t.detach().numpy()) and np.allclose(a, a_t.detach().numpy())


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


# ---- decoding ----------------------------------------------------------------------------------------
class MarkovModel(torch.nn.Module):
    """A fake seq2seq model: the next-token logits depend only on the previous token (a random table)."""

    def __init__(self, V, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(V, V, generator=g) * 2)

    def encode(self, src, src_len):
        return {"dummy": torch.zeros(src.shape[0])}

    def step(self, y_prev, state):
        return self.table[y_prev], state


def brute_force_best(model, V, bos, eos, max_len):
    logp = torch.log_softmax(model.table.detach(), -1)
    best, best_seq = -math.inf, None
    others = [t for t in range(V) if t != eos]
    for L in range(0, max_len):
        for seq in itertools.product(others, repeat=L):
            prev, s = bos, 0.0
            for t in list(seq) + [eos]:
                s += float(logp[prev, t])
                prev = t
            if s > best:
                best, best_seq = s, list(seq)
    return best_seq, best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_exhaustive_equals_brute_force(seed):
    V, bos, eos, max_len = 4, 2, 3, 4
    model = MarkovModel(V, seed)
    best_seq, best = brute_force_best(model, V, bos, eos, max_len)
    hyps = beam_search(model, [0], V ** max_len, bos, eos, max_len)
    assert hyps[0][0] == best_seq and hyps[0][1] == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_width_one_is_greedy(seed):
    model = MarkovModel(6, seed)
    greedy, _ = seq2seq_greedy_decode(model, torch.zeros(1, 2, dtype=torch.long), torch.tensor([2]), 2, 3, 8)
    assert beam_search(model, [0, 1], 1, 2, 3, 8)[0][0] == greedy[0]


def test_beam_search_on_real_models():
    torch.manual_seed(0)
    for model in (AttentionSeq2Seq(7, 9, 4, 5), TransformerSeq2Seq(7, 9, 8, 2, 1, 16)):
        src = torch.tensor([[4, 5, 3, 1], [6, 3, 1, 1]])
        greedy, _ = seq2seq_greedy_decode(model, src, torch.tensor([3, 2]), 2, 3, 5)
        for i, ids in enumerate(([4, 5, 3], [6, 3])):
            assert beam_search(model, ids, 1, 2, 3, 5)[0][0] == greedy[i]   # padding does not change the result
            hyps = beam_search(model, ids, 3, 2, 3, 5)
            assert len(hyps) >= 1 and hyps[0][1] <= 0


def test_banned_tokens_are_never_produced():
    model = MarkovModel(6, 5)
    banned = (0, 1)
    greedy, _ = seq2seq_greedy_decode(model, torch.zeros(3, 1, dtype=torch.long), torch.tensor([1, 1, 1]), 2, 3, 6, banned)
    beams = beam_search(model, [0], 4, 2, 3, 6, banned=banned)
    samples = [sample_decode(model, [0], 2, 3, 6, 1.5, rng=np.random.default_rng(i), banned=banned) for i in range(20)]
    for ids in greedy + [h[0] for h in beams] + samples:
        assert not set(ids) & set(banned)
    assert beam_search(model, [0], 1, 2, 3, 6, banned=banned)[0][0] == greedy[0]


@torch.no_grad()
def greedy_reference(model, src, src_len, bos_id, eos_id, max_len, banned=()):
    """The loop seq2seq_greedy_decode replaced, written out: argmax of every step, all rows until each has <eos>."""
    model.eval()
    state = model.encode(src, src_len)
    y = torch.full((src.shape[0],), bos_id, dtype=torch.long)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    outputs, alphas = [], []
    for _ in range(max_len):
        logits, state = model.step(y, state)
        y = ban_tokens(logits, banned).argmax(dim=-1)
        outputs.append(y)
        if "alpha" in state:
            alphas.append(state["alpha"])
        done |= y == eos_id
        if bool(done.all()):
            break
    ids = torch.stack(outputs, dim=1).tolist()
    return [row[:row.index(eos_id)] if eos_id in row else row for row in ids], (torch.stack(alphas, 1) if alphas else None)


@pytest.mark.parametrize("banned", [(), (0, 1, 2)])
def test_greedy_decode_equals_the_plain_loop(banned):
    torch.manual_seed(0)
    src, src_len = torch.tensor([[4, 5, 6, 3], [6, 3, 1, 1], [5, 3, 1, 1]]), torch.tensor([4, 2, 2])
    for model in (MarkovModel(9, 0), AttentionSeq2Seq(7, 9, 4, 5), TransformerSeq2Seq(7, 9, 8, 2, 1, 16)):
        for max_len in (1, 3, 12):
            hyps, alphas = seq2seq_greedy_decode(model, src, src_len, 2, 3, max_len, banned)
            ref_hyps, ref_alphas = greedy_reference(model, src, src_len, 2, 3, max_len, banned)
            assert hyps == ref_hyps and all(len(h) <= max_len for h in hyps)
            assert (alphas is None) == (ref_alphas is None)
            if alphas is not None:                 # up to each row's <eos> (later steps of a finished row differ)
                assert alphas.shape == ref_alphas.shape
                for i, h in enumerate(hyps):
                    assert torch.equal(alphas[i, :len(h) + 1], ref_alphas[i, :len(h) + 1])


def test_filter_logits():
    z = np.array([1.0, 3.0, 2.0, 0.0, -1.0])
    assert np.isfinite(filter_logits(z, top_k=2)).tolist() == [False, True, True, False, False]
    assert np.isfinite(filter_logits(z, top_k=0)).all()
    p = np.exp(z) / np.exp(z).sum()                   # sorted: 0.665, 0.245, 0.090, ...
    assert np.isfinite(filter_logits(z, top_p=0.5)).sum() == 1
    assert np.isfinite(filter_logits(z, top_p=p[1] + 1e-9)).sum() == 2
    assert np.isfinite(filter_logits(z, top_p=p[1] + p[2] + 0.01)).sum() == 3
    for bad in (dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            filter_logits(z, **bad)
    with pytest.raises(ValueError):
        beam_search(MarkovModel(4, 0), [0], 0, 2, 3, 4)


# ---- data ----------------------------------------------------------------------------------------------
def test_tokenizers_vocab_and_split():
    assert tokenize_words("Don't go!") == ["don't", "go", "!"]
    assert tokenize_words("Tom est là\u202f!") == ["tom", "est", "là", "!"]
    assert tokenize_chars("我很 好。") == ["我", "很", "好", "。"]
    vocab = SeqVocab([["a", "b"], ["b"]])
    assert vocab.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"] and vocab.encode(["zzz"]) == [0]
    assert vocab.tokens([4, 5, 3, 4]) == ["b", "a"]
    ids, lengths = pad_batch([["b"], ["a", "b"]], vocab, bos=True)
    assert ids.tolist() == [[2, 4, 3, 1], [2, 5, 4, 3]] and lengths.tolist() == [3, 4]
    groups = {("s%d" % i,): [["t"], ["u"]] for i in range(20)}
    train, test = split_by_source(groups, 0.25, np.random.default_rng(0))
    assert len(test) == 5 and len(train) == 30
    assert not {tuple(s) for s, _ in train} & {tuple(s) for s, _ in test}
    with pytest.raises(ValueError):
        split_by_source(groups, 0.0, np.random.default_rng(0))


def test_transformer_positions_are_chapter_8a_encoding():
    """Interleaved layout P[t, 2i] = sin(t / 10000^(2i/d)), P[t, 2i+1] = cos(...), as before the move to ch08a."""
    model = TransformerSeq2Seq(5, 5, 8, 2, 1, 16, max_len=6)
    t, i = np.arange(6)[:, None], np.arange(0, 8, 2)[None, :]
    expected = np.zeros((6, 8))
    expected[:, 0::2], expected[:, 1::2] = np.sin(t / 10000 ** (i / 8)), np.cos(t / 10000 ** (i / 8))
    assert model.positions.dtype == torch.float32
    assert torch.equal(model.positions, torch.tensor(expected, dtype=torch.float32))


def test_transformer_rejects_too_long():
    model = TransformerSeq2Seq(5, 5, 8, 2, 1, 16, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        model.encode(torch.zeros(1, 6, dtype=torch.long))


def test_translate_bad_input():
    src_vocab = SeqVocab([["hi", "."], ["go", "."]])
    tgt_vocab = SeqVocab([list("你好。"), list("走。")])
    torch.manual_seed(0)
    model = AttentionSeq2Seq(len(src_vocab), len(tgt_vocab), 4, 5)
    args = (src_vocab, tgt_vocab, tokenize_words, 3)
    for bad in ("", "   ", "?"[:0]):
        with pytest.raises(ValueError, match="empty"):
            translate(model, bad, *args)
    with pytest.raises(ValueError, match="at most 3"):
        translate(model, "hi hi hi hi .", *args)
    out, unknown = translate(model, "Hi zorblax.", *args, beam_width=2, max_len=4, joiner="")
    assert unknown == ["zorblax"] and "<unk>" not in out and len(out) <= 4
