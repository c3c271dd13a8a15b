"""External memory of notebooks/08c_external_memory.ipynb (nndl_helpers.chapters.ch08c / ch08c_torch):
the memory network's hand-written backward passes against torch.autograd in float64, the modern Hopfield
update against chapter 8a's attention, and the Hopfield dynamics' energy."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch08a import scaled_dot_product_attention_forward
from nndl_helpers.chapters.ch08c import (
    QA_VOCAB, QA_WORD_ID, MemN2N, bow_memory_backward, bow_memory_forward, covariance_weights, encode_stories,
    hebbian_weights, hopfield_energy, hopfield_update_async, hopfield_update_sync, make_location_stories,
    memory_hop_backward, memory_hop_forward, modern_hopfield_energy, modern_hopfield_update)
from nndl_helpers.chapters.ch08c_torch import TorchMemN2N, memn2n_forward_torch, train_memn2n_torch

TOL = 1e-6


# ---- the memory network: bag-of-words memories, one hop, the whole model ----

@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 4, 2), (5, 7, 3)])
def test_bow_memory_backward_matches_autograd(shape):
    N, M, L = shape
    rng = np.random.default_rng(sum(shape))
    tokens = rng.integers(0, 6, size=shape)
    tokens[0, 0, :] = tokens[0, 0, 0]                       # repeated words must accumulate
    E, T, dm = rng.standard_normal((6, 4)), rng.standard_normal((M + 2, 4)), rng.standard_normal((N, M, 4))
    m, cache = bow_memory_forward(tokens, E, T)
    np.testing.assert_allclose(m, E[tokens].sum(2) + T[:M])
    dE, dT = bow_memory_backward(dm, cache)
    ref = nh.autograd_gradients(lambda tokens, E, T: E[tokens].sum(2) + T[:tokens.shape[1]],
                                {"tokens": tokens, "E": E, "T": T}, wrt=["E", "T"], dout=dm)
    assert nh.rel_error(dE, ref["E"]) < TOL and nh.rel_error(dT, ref["T"]) < TOL
    assert not dT[M:].any()                                   # unused temporal rows get nothing


def torch_hop(mask):
    def hop(u, m, c):
        scores = torch.einsum("nmd,nd->nm", m, u) / math.sqrt(u.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~torch.from_numpy(mask[:, 0]), float("-inf"))
        return u + torch.einsum("nm,nmd->nd", torch.softmax(scores, dim=-1), c)
    return hop


@pytest.mark.parametrize("N,M,d", [(1, 1, 1), (4, 5, 3), (6, 9, 8)])
@pytest.mark.parametrize("masked", [False, True])
def test_memory_hop_backward_matches_autograd(N, M, d, masked):
    rng = np.random.default_rng(N * M * d + masked)
    u, m, c = rng.standard_normal((N, d)), rng.standard_normal((N, M, d)), rng.standard_normal((N, M, d))
    mask = None
    if masked:
        mask = np.ones((N, 1, M), dtype=bool)
        mask[-1, 0, 1:] = False
    du_next = rng.standard_normal((N, d))
    u_next, p, cache = memory_hop_forward(u, m, c, mask)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    du, dm, dc = memory_hop_backward(du_next, cache)
    ref = nh.autograd_gradients(torch_hop(mask), {"u": u, "m": m, "c": c}, dout=du_next)
    out = torch_hop(mask)(*(torch.from_numpy(x) for x in (u, m, c))).numpy()
    assert np.abs(u_next - out).max() < 1e-12
    for name, g in {"u": du, "m": dm, "c": dc}.items():
        assert nh.rel_error(g, ref[name]) < TOL, name
    if masked:
        assert not dm[-1, 1:].any() and not dc[-1, 1:].any()


def random_qa_batch(rng, n, vocab, slots):
    story = rng.integers(1, vocab, size=(n, slots, 3))
    story[0, 1:] = 0                                           # a story with one sentence only
    return story, rng.integers(1, vocab, size=(n, 3)), rng.integers(0, vocab, size=n)


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("n,vocab,d,slots", [(1, 5, 2, 2), (6, 11, 5, 4), (9, 18, 8, 10)])
def test_memn2n_backward_matches_autograd(hops, n, vocab, d, slots):
    rng = np.random.default_rng(hops * 100 + n)
    model = MemN2N(vocab, d, hops, max_memories=slots, std=0.7, seed=n)
    story, question, answer = random_qa_batch(rng, n, vocab, slots)
    loss, grads = model.loss(story, question, answer)
    assert set(grads) == set(model.params) == {f"{x}{k}" for x in "ET" for k in range(hops + 1)}

    def torch_loss(story, question, answer, **params):
        return F.cross_entropy(memn2n_forward_torch(story, question, params, hops)[0], answer)

    inputs = {"story": story, "question": question, "answer": answer, **model.params}
    ref = nh.autograd_gradients(torch_loss, inputs, wrt=list(model.params))
    t_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}
    assert loss == pytest.approx(torch_loss(**t_inputs).item(), rel=1e-12)
    for k in model.params:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    logits, attention, _ = model.forward(story, question)
    t_logits, t_attention = memn2n_forward_torch(t_inputs["story"], t_inputs["question"],
                                                 {k: t_inputs[k] for k in model.params}, hops)
    assert np.abs(logits - t_logits.numpy()).max() < 1e-12 and np.abs(attention - t_attention.numpy()).max() < 1e-12
    assert attention.shape == (n, hops, slots) and not attention[0, :, 1:].any()   # empty slots: weight 0


def test_memn2n_gradient_check_can_fail():
    """A backward that forgets the residual path u -> u + o is caught."""
    rng = np.random.default_rng(0)
    model = MemN2N(11, 5, 2, max_memories=4, std=0.7, seed=0)
    story, question, answer = random_qa_batch(rng, 6, 11, 4)
    _, grads = model.loss(story, question, answer)
    ref = nh.autograd_gradients(
        lambda story, question, answer, **p: F.cross_entropy(memn2n_forward_torch(story, question, p, 2)[0], answer),
        {"story": story, "question": question, "answer": answer, **model.params}, wrt=list(model.params))
    assert nh.rel_error(grads["E0"], ref["E0"]) < TOL
    import nndl_helpers.chapters.ch08c as ch08c
    original = ch08c.memory_hop_backward
    try:
        ch08c.memory_hop_backward = lambda du_next, cache: (original(du_next, cache)[0] - du_next,
                                                            *original(du_next, cache)[1:])
        _, wrong = model.loss(story, question, answer)
    finally:
        ch08c.memory_hop_backward = original
    assert nh.rel_error(wrong["E0"], ref["E0"]) > 1e-3


def test_torch_memn2n_trains_and_matches_numpy_weights():
    rng = np.random.default_rng(1)
    numpy_model = MemN2N(len(QA_VOCAB), 6, 2, max_memories=5, seed=3, dtype=np.float32)
    torch_model = TorchMemN2N(len(QA_VOCAB), 6, hops=2, max_memories=5)
    with torch.no_grad():
        for k, v in numpy_model.params.items():
            torch_model.params[k].copy_(torch.from_numpy(v))
    story, question, answer = random_qa_batch(rng, 8, len(QA_VOCAB), 5)
    st, qt, at = (torch.from_numpy(x) for x in (story, question, answer))
    with torch.no_grad():
        np.testing.assert_allclose(torch_model(st, qt).numpy(), numpy_model(story, question), rtol=1e-5, atol=1e-6)
        assert torch_model.attention(st, qt).shape == (8, 2, 5)
    losses = train_memn2n_torch(torch_model, st, qt, at, torch.stack([torch.randperm(8) for _ in range(3)]),
                                batch_size=4, lr=0.05)
    assert losses.shape == (6,) and torch.isfinite(losses).all() and losses[-1] < losses[0]


# ---- the generated question-answering task ----

def test_location_stories_answer_their_questions():
    stories, questions, answers, facts, supports = make_location_stories(300, np.random.default_rng(0), max_sentences=8)
    assert set(facts.tolist()) == {1, 2}
    for lines, q, a, f, sup in zip(stories, questions, answers, facts, supports):
        assert 2 <= len(lines) <= 8 and len(sup) == f and q[:2] == ("where", "is")
        who = q[2] if f == 1 else next(line[0] for line in lines if line[1] == "got" and line[2] == q[2])
        last_place = [line[2] for line in lines if line[0] == who and line[1] == "went"][-1]
        assert a == last_place and lines[sup[0]] == (who, "went", a)
        if f == 2:
            assert lines[sup[1]] == (who, "got", q[2])
    story, question, answer = encode_stories(stories, questions, answers, max_sentences=8)
    assert story.shape == (300, 8, 3) and question.shape == (300, 3) and answer.shape == (300,)
    assert [QA_VOCAB[i] for i in story[0, 0]] == list(stories[0][-1])          # slot 0: the latest sentence
    assert (story[0, len(stories[0]):] == QA_WORD_ID["<pad>"]).all()


# ---- Hopfield networks ----

def test_modern_hopfield_update_is_chapter_8a_attention():
    rng = np.random.default_rng(0)
    for P, N, B in [(1, 1, 1), (50, 16, 7), (300, 64, 3)]:
        X, xi = rng.standard_normal((P, N)), rng.standard_normal((B, N))
        for beta in (1 / math.sqrt(N), 0.3, 2.0):
            new, weights = modern_hopfield_update(xi, X, beta=beta)
            O, A, _ = scaled_dot_product_attention_forward(xi * (beta * math.sqrt(N)), X, X)
            assert np.abs(new - O).max() < 1e-12 and np.abs(weights - A).max() < 1e-12
            one, w_one = modern_hopfield_update(xi[0], X, beta=beta)                 # a single state
            assert one.shape == (N,) and np.abs(one - new[0]).max() < 1e-12 and w_one.shape == (P,)


def test_modern_hopfield_energy_never_increases_and_is_nonnegative():
    rng = np.random.default_rng(1)
    X, xi = 2 * rng.standard_normal((40, 10)), 3 * rng.standard_normal((6, 10))
    for beta in (0.05, 0.5, 5.0):
        state, energies = xi, [modern_hopfield_energy(xi, X, beta=beta)]
        for _ in range(15):
            state = modern_hopfield_update(state, X, beta=beta)[0]
            energies.append(modern_hopfield_energy(state, X, beta=beta))
        energies = np.array(energies)
        assert np.diff(energies, axis=0).max() <= 1e-9 and energies.min() >= -1e-12


def test_hebbian_weights_store_few_random_patterns():
    rng = np.random.default_rng(2)
    X = rng.choice([-1.0, 1.0], size=(5, 200))
    W = hebbian_weights(X)
    assert np.allclose(W, W.T) and not np.diag(W).any()
    assert (hopfield_update_sync(X, W) == X).all()                           # load 0.025: fixed points
    cues = np.where(rng.random(X.shape) < 0.15, -X, X)
    recalled, energies = hopfield_update_async(cues, W, rng=rng, trace=True)
    assert (recalled == X).all()
    assert np.diff(energies, axis=1).max() <= 1e-12
    np.testing.assert_allclose(energies[:, -1], hopfield_energy(recalled, W), atol=1e-9)


def test_asynchronous_energy_never_increases_with_biases():
    rng = np.random.default_rng(3)
    X = np.where(rng.random((8, 60)) < 0.2, 1.0, -1.0)                       # biased, correlated patterns
    W, b = covariance_weights(X)
    assert np.allclose(W, W.T) and not np.diag(W).any() and b.shape == (60,)
    s, energies = hopfield_update_async(rng.choice([-1.0, 1.0], size=60), W, b, rng=rng, trace=True)
    assert s.shape == (60,) and np.diff(energies).max() <= 1e-12
    assert (hopfield_update_async(s, W, b, rng=rng)[0] == s).all()           # it stopped in a stable state


def test_synchronous_updates_can_oscillate():
    W = np.array([[0.0, 1.0], [1.0, 0.0]])
    s1 = hopfield_update_sync(np.array([1.0, -1.0]), W)
    assert s1.tolist() == [-1.0, 1.0] and hopfield_update_sync(s1, W).tolist() == [1.0, -1.0]
    assert hopfield_energy(np.array([1.0, -1.0]), W) == 1.0


# ---- input errors ----

def test_input_errors():
    with pytest.raises(ValueError, match=r"\+1/-1"):
        hebbian_weights(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="N = 4"):
        hopfield_energy(np.ones(3), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="beta"):
        modern_hopfield_update(np.ones(3), np.ones((2, 3)), beta=0)
    with pytest.raises(ValueError, match="xi"):
        modern_hopfield_update(np.ones(4), np.ones((2, 3)), beta=1.0)
    with pytest.raises(ValueError, match="integer ids"):
        bow_memory_forward(np.zeros((2, 3, 1)), np.ones((4, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="M <= 2"):
        bow_memory_forward(np.zeros((2, 3, 1), dtype=int), np.ones((4, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="need u"):
        memory_hop_forward(np.ones((2, 3)), np.ones((2, 4, 3)), np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="MemN2N expects"):
        MemN2N(5, 2, 1)(np.zeros((2, 6), dtype=int), np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="hops"):
        MemN2N(5, 2, 0)
    with pytest.raises(ValueError, match="max_sentences"):
        make_location_stories(3, np.random.default_rng(0), max_sentences=1)
    with pytest.raises(ValueError, match="more than max_sentences"):
        encode_stories([[("mary", "went", "office")] * 3], [("where", "is", "mary")], ["office"], max_sentences=2)
