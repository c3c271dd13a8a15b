"""Chapter 15b (neural machine translation): the PyTorch attention module against chapter 8a's NumPy attention,
greedy decoding (chapter 8b's loop around a PyTorch model), beam search against brute force, sampling filters,
the Transformer's positions, and bad input.

Everything tested here is imported from ``nndl_helpers.chapters.ch15b`` / ``ch15b_torch``, the modules exported
from the notebook's ``#@save`` cells.
"""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch08a import additive_attention_forward
from nndl_helpers.chapters.ch15a import SeqVocab, tokenize_words
from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch15b import filter_logits, label_smoothing_loss
from nndl_helpers.chapters.ch15b_torch import (AdditiveAttention, AttentionSeq2Seq, TransformerSeq2Seq, ban_tokens,
                                               beam_search, sample_decode, seq2seq_greedy_decode, translate)

TOL = 1e-6


def test_torch_module_matches_numpy():
    rng = np.random.default_rng(1)
    att = AdditiveAttention(3, 4, 5).double()
    q, K = rng.normal(size=(2, 3)), rng.normal(size=(2, 6, 4))
    mask = np.array([[1] * 6, [1, 1, 0, 0, 0, 0]], dtype=bool)
    c_t, a_t = att(torch.as_tensor(q), torch.as_tensor(K), torch.as_tensor(K), torch.as_tensor(mask))
    c, a, _ = additive_attention_forward(q, K, K, att.W_q.weight.detach().numpy().T,
                                         att.W_k.weight.detach().numpy().T, att.w.weight.detach().numpy()[0], mask)
    assert np.allclose(c, c_t.detach().numpy()) and np.allclose(a, a_t.detach().numpy())


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


# ---- label smoothing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,smoothing", [((1, 2), 0.1), ((5, 7), 0.0), ((8, 13), 0.1), ((4, 3), 0.5)])
def test_label_smoothing_loss_matches_torch(shape, smoothing):
    rng = np.random.default_rng(shape[1])
    z, y = rng.normal(size=shape) * 2, rng.integers(0, shape[1], size=shape[0])
    loss, dz = label_smoothing_loss(z, y, smoothing)
    torch_fn = lambda z: F.cross_entropy(z, torch.as_tensor(y), label_smoothing=smoothing)
    assert loss == pytest.approx(float(torch_fn(torch.as_tensor(z))), abs=1e-12)
    ref = nh.autograd_gradients(torch_fn, {"z": z}, wrt=["z"])
    assert nh.rel_error(dz, ref["z"]) < TOL
    if smoothing == 0:
        plain, dplain = softmax_cross_entropy(z, y)
        assert loss == pytest.approx(plain) and np.allclose(dz, dplain)


def test_label_smoothing_loss_rejects_bad_input():
    z, y = np.zeros((2, 3)), np.array([0, 2])
    for bad in (dict(smoothing=1.0), dict(smoothing=-0.1)):
        with pytest.raises(ValueError, match="smoothing"):
            label_smoothing_loss(z, y, **bad)
    with pytest.raises(ValueError):
        label_smoothing_loss(z, np.array([0, 3]))
    with pytest.raises(ValueError):
        label_smoothing_loss(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError):
        label_smoothing_loss(z[0], y)
