"""Chapter 6 (recurrent networks): every hand-written backward against torch.autograd, and bad input.

Everything tested here is imported from ``nndl_helpers.chapters.ch06``, the module exported from the
notebook's ``#@save`` cells, so the tests check the code the notebook teaches.
"""
import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers.chapters.ch06 import (
    Vocab,
    clip_gradients,
    generate,
    gru_backward,
    gru_forward,
    gru_step_backward,
    gru_step_forward,
    lstm_backward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    preprocess_english,
    rnn_backward,
    rnn_forward,
    rnn_step_backward,
    rnn_step_forward,
    sample_token,
    seq_data_iter_random,
    seq_data_iter_sequential,
)

TOL = 1e-6
SHAPES = [(1, 1, 1, 1), (2, 3, 4, 5), (3, 7, 2, 3), (5, 4, 9, 8), (4, 11, 6, 13)]   # (N, T, D, H)


def arrays(rng, **shapes):
    return {k: rng.normal(size=s) * (0.5 if k.startswith("W") else 1.0) for k, s in shapes.items()}


def check(ours, torch_fn, inputs, dout):
    ref = nh.autograd_gradients(torch_fn, inputs, wrt=list(ours), dout=dout)
    for k in ours:
        err = nh.rel_error(ours[k], ref[k])
        assert err < TOL, f"d{k}: relative error {err:.1e}"


# ---- torch references: the same recurrences written with torch operations --------------------
def t_rnn_step(x, h_prev, Wx, Wh, b):
    return torch.tanh(x @ Wx + h_prev @ Wh + b)


def t_lstm_step(x, h_prev, c_prev, Wx, Wh, b):
    i, f, g, o = (x @ Wx + h_prev @ Wh + b).chunk(4, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def t_gru_step(x, h_prev, Wx, Wh, bx, bh):
    H = h_prev.shape[1]
    ax, ah = x @ Wx + bx, h_prev @ Wh + bh
    r = torch.sigmoid(ax[:, :H] + ah[:, :H])
    z = torch.sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = torch.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    return (1 - z) * n + z * h_prev


def t_unroll(step, x, h0, *weights):
    h, out = h0, []
    for t in range(x.shape[1]):
        h = step(x[:, t], h, *weights)
        out.append(h)
    return torch.stack(out, dim=1)


# ---- simple RNN -------------------------------------------------------------------------------
@pytest.mark.parametrize("N,T,D,H", SHAPES)
@pytest.mark.parametrize("seed", [0])
def test_rnn_step_backward(N, T, D, H, seed):
    rng = np.random.default_rng(seed)
    inp = arrays(rng, x=(N, D), h_prev=(N, H), Wx=(D, H), Wh=(H, H), b=(H,))
    dout = rng.normal(size=(N, H))
    _, cache = rnn_step_forward(**inp)
    ours = dict(zip(inp, rnn_step_backward(dout, cache)))
    check(ours, t_rnn_step, inp, dout)


@pytest.mark.parametrize("N,T,D,H", SHAPES)
@pytest.mark.parametrize("seed", [0])
def test_rnn_backward_through_time(N, T, D, H, seed):
    rng = np.random.default_rng(seed)
    inp = arrays(rng, x=(N, T, D), h0=(N, H), Wx=(D, H), Wh=(H, H), b=(H,))
    dout = rng.normal(size=(N, T, H))
    _, cache = rnn_forward(**inp)
    ours = dict(zip(inp, rnn_backward(dout, cache)))
    check(ours, lambda x, h0, Wx, Wh, b: t_unroll(t_rnn_step, x, h0, Wx, Wh, b), inp, dout)


def test_bptt_carries_gradient_between_steps():
    """A backward that forgot dh_next (no BPTT) would differ: the test above can fail."""
    rng = np.random.default_rng(3)
    inp = arrays(rng, x=(2, 5, 3), h0=(2, 4), Wx=(3, 4), Wh=(4, 4), b=(4,))
    dout = rng.normal(size=(2, 5, 4))
    _, cache = rnn_forward(**inp)
    dWh_bptt = rnn_backward(dout, cache)[3]
    h, dWh_local = inp["h0"], 0
    for t in range(5):                   # each step's own gradient, nothing carried back from t + 1
        h, step_cache = rnn_step_forward(inp["x"][:, t], h, inp["Wx"], inp["Wh"], inp["b"])
        dWh_local = dWh_local + rnn_step_backward(dout[:, t], step_cache)[3]
    assert nh.rel_error(dWh_bptt, dWh_local) > 1e-3


# ---- LSTM -------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,T,D,H", SHAPES)
@pytest.mark.parametrize("seed", [0])
def test_lstm_step_backward(N, T, D, H, seed):
    rng = np.random.default_rng(seed)
    inp = arrays(rng, x=(N, D), h_prev=(N, H), c_prev=(N, H), Wx=(D, 4 * H), Wh=(H, 4 * H), b=(4 * H,))
    dh, dc = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    _, _, cache = lstm_step_forward(**inp)
    ours = dict(zip(inp, lstm_step_backward(dh, dc, cache)))

    def both(**t):                       # loss = sum(h * dh) + sum(c * dc) as one output
        h, c = t_lstm_step(**t)
        return torch.cat([h, c], dim=1)

    check(ours, both, inp, np.concatenate([dh, dc], axis=1))


def test_lstm_step_backward_dc_none_means_zero():
    rng = np.random.default_rng(2)
    inp = arrays(rng, x=(3, 4), h_prev=(3, 5), c_prev=(3, 5), Wx=(4, 20), Wh=(5, 20), b=(20,))
    dh = rng.normal(size=(3, 5))
    h, c, cache = lstm_step_forward(**inp)
    with_none, with_zeros = lstm_step_backward(dh, None, cache), lstm_step_backward(dh, np.zeros_like(c), cache)
    assert all(np.array_equal(a, b) for a, b in zip(with_none, with_zeros))
    check(dict(zip(inp, with_none)), lambda **t: t_lstm_step(**t)[0], inp, dh)


@pytest.mark.parametrize("N,T,D,H", SHAPES)
@pytest.mark.parametrize("with_dc", [False, True])
def test_lstm_backward_through_time(N, T, D, H, with_dc):
    rng = np.random.default_rng(N * T + with_dc)
    inp = arrays(rng, x=(N, T, D), h0=(N, H), c0=(N, H), Wx=(D, 4 * H), Wh=(H, 4 * H), b=(4 * H,))
    dh = rng.normal(size=(N, T, H))
    dc = rng.normal(size=(N, T, H)) if with_dc else np.zeros((N, T, H))
    _, _, cache = lstm_forward(**inp)
    ours = dict(zip(inp, lstm_backward(dh, dc if with_dc else None, cache)))

    def unrolled(x, h0, c0, Wx, Wh, b):
        h, c, hs, cs = h0, c0, [], []
        for t in range(x.shape[1]):
            h, c = t_lstm_step(x[:, t], h, c, Wx, Wh, b)
            hs.append(h)
            cs.append(c)
        return torch.cat([torch.stack(hs, 1), torch.stack(cs, 1)], dim=2)

    check(ours, unrolled, inp, np.concatenate([dh, dc], axis=2))


# ---- GRU --------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,T,D,H", SHAPES)
@pytest.mark.parametrize("seed", [0])
def test_gru_step_backward(N, T, D, H, seed):
    rng = np.random.default_rng(seed)
    inp = arrays(rng, x=(N, D), h_prev=(N, H), Wx=(D, 3 * H), Wh=(H, 3 * H), bx=(3 * H,), bh=(3 * H,))
    dout = rng.normal(size=(N, H))
    _, cache = gru_step_forward(**inp)
    ours = dict(zip(inp, gru_step_backward(dout, cache)))
    check(ours, t_gru_step, inp, dout)


@pytest.mark.parametrize("N,T,D,H", SHAPES)
def test_gru_backward_through_time(N, T, D, H):
    rng = np.random.default_rng(N + T)
    inp = arrays(rng, x=(N, T, D), h0=(N, H), Wx=(D, 3 * H), Wh=(H, 3 * H), bx=(3 * H,), bh=(3 * H,))
    dout = rng.normal(size=(N, T, H))
    _, cache = gru_forward(**inp)
    ours = dict(zip(inp, gru_backward(dout, cache)))
    check(ours, lambda x, h0, Wx, Wh, bx, bh: t_unroll(t_gru_step, x, h0, Wx, Wh, bx, bh), inp, dout)


# ---- against nn.LSTM / nn.GRU with copied weights -----------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("N,T,D,H", [(2, 3, 4, 5), (3, 9, 7, 6)])
def test_matches_torch_modules(kind, N, T, D, H):
    rng = np.random.default_rng(7)
    gates = 4 if kind == "lstm" else 3
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    Wx, Wh = rng.normal(size=(D, gates * H)) * 0.5, rng.normal(size=(H, gates * H)) * 0.5
    bx, bh = rng.normal(size=gates * H), rng.normal(size=gates * H)
    dout = rng.normal(size=(N, T, H))
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(D, H, batch_first=True).double()
    with torch.no_grad():
        for name, value in [("weight_ih_l0", Wx.T), ("weight_hh_l0", Wh.T), ("bias_ih_l0", bx), ("bias_hh_l0", bh)]:
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    xt = torch.from_numpy(x).requires_grad_(True)
    if kind == "lstm":
        h, _, cache = lstm_forward(x, h0, None, Wx, Wh, bx + bh)
        dx, _, _, dWx, dWh, db = lstm_backward(dout, None, cache)
        dbx = dbh = db
        out, _ = module(xt, (torch.from_numpy(h0)[None], torch.zeros(1, N, H, dtype=torch.float64)))
    else:
        h, cache = gru_forward(x, h0, Wx, Wh, bx, bh)
        dx, _, dWx, dWh, dbx, dbh = gru_backward(dout, cache)
        out, _ = module(xt, torch.from_numpy(h0)[None])
    (out * torch.from_numpy(dout)).sum().backward()
    assert nh.rel_error(h, out.detach().numpy()) < TOL
    assert nh.rel_error(dx, xt.grad.numpy()) < TOL
    assert nh.rel_error(dWx, module.weight_ih_l0.grad.numpy().T) < TOL
    assert nh.rel_error(dWh, module.weight_hh_l0.grad.numpy().T) < TOL
    assert nh.rel_error(dbx, module.bias_ih_l0.grad.numpy()) < TOL
    assert nh.rel_error(dbh, module.bias_hh_l0.grad.numpy()) < TOL


# ---- gradient clipping, sampling, text handling and bad input ------------------------------------
def test_clip_gradients_rescales_jointly_and_keeps_direction():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)) * 10, "b": rng.normal(size=5) * 10}
    before = {k: v.copy() for k, v in grads.items()}
    norm = clip_gradients(grads, 1.0)
    assert norm == pytest.approx(np.sqrt(sum((v ** 2).sum() for v in before.values())))
    assert np.sqrt(sum((v ** 2).sum() for v in grads.values())) == pytest.approx(1.0)
    for k in grads:
        np.testing.assert_allclose(grads[k] * norm, before[k], rtol=1e-9)
    small = {"a": np.full(3, 0.1)}
    clip_gradients(small, 1.0)
    np.testing.assert_array_equal(small["a"], np.full(3, 0.1))
    with pytest.raises(ValueError, match="max_norm"):
        clip_gradients(grads, 0.0)


def test_sample_token():
    logits = np.array([1.0, 3.0, 2.0])
    assert sample_token(logits, 0.0) == 1
    draws = [sample_token(logits, 1e-3, np.random.default_rng(s)) for s in range(20)]
    assert set(draws) == {1}
    huge = np.array([1e6, -1e6, 1e6 - 1])                  # no overflow in softmax
    assert sample_token(huge, 1.0, np.random.default_rng(0)) in (0, 2)
    with pytest.raises(ValueError, match="temperature"):
        sample_token(logits, -1.0)


def test_vocab_and_preprocessing():
    text = preprocess_english("The Time-Machine,\n  by H. G. Wells!")
    assert text == "the time machine by h g wells"
    vocab = Vocab(text)
    assert vocab.idx_to_token[0] == "<unk>" and vocab.idx_to_token[1] == " "   # most frequent first
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.encode("t?") == [vocab.token_to_idx["t"], 0]                  # documented fallback
    with pytest.raises(ValueError, match=r"not in the vocabulary: '\?'"):
        vocab.encode("t?", strict=True)
    with pytest.raises(ValueError, match="empty"):
        Vocab("")
    with pytest.raises(ValueError, match="empty"):
        preprocess_english("123 !?")


def test_sequence_iterators():
    corpus = np.arange(50)
    for it in (seq_data_iter_random, seq_data_iter_sequential):
        batches = list(it(corpus, 3, 4, np.random.default_rng(0)))
        assert batches
        for X, Y in batches:
            assert X.shape == Y.shape and X.shape[1] == 4
            np.testing.assert_array_equal(Y, X + 1)            # targets are inputs shifted by one
        with pytest.raises(ValueError, match="num_steps"):
            next(it(corpus, 3, 0, np.random.default_rng(0)))
        with pytest.raises(ValueError, match="too short"):
            next(it(np.arange(3), 3, 4, np.random.default_rng(0)))
    seq = list(seq_data_iter_sequential(corpus, 2, 5, np.random.default_rng(1)))
    np.testing.assert_array_equal(seq[1][0][:, 0], seq[0][0][:, -1] + 1)   # rows continue


@pytest.mark.parametrize("forward, weights", [
    (rnn_forward, [np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(4)]),
    (gru_forward, [np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(12), np.zeros(12)]),
])
def test_sequence_length_zero_is_a_clear_error(forward, weights):
    with pytest.raises(ValueError, match="sequence length T is 0"):
        forward(np.zeros((2, 0, 3)), np.zeros((2, 4)), *weights)


@pytest.mark.parametrize("forward, gates", [(rnn_forward, 1), (gru_forward, 3), (lstm_forward, 4)])
def test_weight_shapes_are_checked(forward, gates):
    x, h0 = np.zeros((2, 5, 3)), np.zeros((2, 4))
    Wx, Wh, b = np.zeros((3, gates * 4)), np.zeros((4, gates * 4)), np.zeros(gates * 4)
    extra = {1: [b], 3: [b, b], 4: [b]}[gates]
    pre = [x, h0, None] if forward is lstm_forward else [x, h0]
    forward(*pre, Wx, Wh, *extra)                                        # fits: no error
    with pytest.raises(ValueError, match=rf"Wx must be \(3, {gates * 4}\) and Wh \(4, {gates * 4}\); got \(2, {gates * 4}\)"):
        forward(*pre, np.zeros((2, gates * 4)), Wh, *extra)


def test_lstm_sequence_length_zero_and_bad_h0():
    with pytest.raises(ValueError, match="sequence length T is 0"):
        lstm_forward(np.zeros((2, 0, 3)), np.zeros((2, 4)), None, np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16))
    with pytest.raises(ValueError, match="h0"):
        lstm_forward(np.zeros((2, 5, 3)), np.zeros((3, 4)), None, np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16))
    with pytest.raises(ValueError, match="c0 must have the shape of h0"):
        lstm_forward(np.zeros((2, 5, 3)), np.zeros((2, 4)), np.zeros((2, 5)), np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16))


def test_generate_bad_prefix_and_success():
    vocab = Vocab("abc")
    V = len(vocab)

    def step(token_id, state):                    # a "model" that always predicts the next letter
        logits = np.full(V, -10.0)
        nxt = vocab.token_to_idx[{"a": "b", "b": "c", "c": "a"}[vocab.idx_to_token[token_id]]]
        logits[nxt] = 10.0
        return logits, state

    assert generate(step, vocab, "a", 4, temperature=0) == "abcab"
    assert generate(step, vocab, "a", 0) == "a"
    with pytest.raises(ValueError, match="prefix is empty"):
        generate(step, vocab, "", 3)
    with pytest.raises(ValueError, match="not in the vocabulary: 'xz'"):
        generate(step, vocab, "axz", 3)
