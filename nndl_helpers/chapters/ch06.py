"""NumPy code taught in notebooks/06_recurrent_networks.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import re
from collections import Counter

import numpy as np

from nndl_helpers.chapters.ch03 import sigmoid, softmax


def preprocess_english(text):
    """Lower-case letters and single spaces only: every other character becomes a space, runs collapse.

    Raises ValueError when the text is empty or has no letters at all.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    clean = re.sub(r"[^a-z]+", " ", text.lower()).strip()
    if not clean:
        raise ValueError("text is empty (or has no letters a-z): nothing to model")
    return clean


class Vocab:
    """Token <-> integer id, most frequent tokens first; id 0 is the unknown token '<unk>'.

        vocab = Vocab("hello world")          # characters are the tokens
        ids = vocab.encode("hold")            # list of ints
        vocab.decode(ids)                     # 'hold'

    encode(tokens) maps tokens outside the vocabulary to '<unk>' (the documented fallback);
    encode(tokens, strict=True) raises ValueError naming them instead.
    """

    UNK = "<unk>"

    def __init__(self, tokens, min_freq=1):
        tokens = list(tokens)
        if not tokens:
            raise ValueError("cannot build a vocabulary from empty text")
        counts = Counter(tokens)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.idx_to_token = [self.UNK] + [t for t, c in ranked if c >= min_freq and t != self.UNK]
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}
        self.counts = counts

    @classmethod
    def from_tokens(cls, idx_to_token):
        """The vocabulary with exactly this id -> token list (a saved `vocab.idx_to_token`; id 0 must be '<unk>')."""
        idx_to_token = list(idx_to_token)
        if not idx_to_token or idx_to_token[0] != cls.UNK or len(set(idx_to_token)) != len(idx_to_token):
            raise ValueError("a saved vocabulary starts with '<unk>' and lists each token once")
        vocab = cls.__new__(cls)
        vocab.idx_to_token, vocab.counts = idx_to_token, Counter()
        vocab.token_to_idx = {t: i for i, t in enumerate(idx_to_token)}
        return vocab

    def __len__(self):
        return len(self.idx_to_token)

    def __contains__(self, token):
        return token in self.token_to_idx

    def encode(self, tokens, strict=False):
        tokens = list(tokens)
        unknown = sorted({t for t in tokens if t not in self.token_to_idx})
        if strict and unknown:
            raise ValueError(f"{len(unknown)} token(s) not in the vocabulary: {''.join(map(str, unknown[:20]))!r}")
        return [self.token_to_idx.get(t, 0) for t in tokens]

    def decode(self, ids):
        return "".join(self.idx_to_token[int(i)] for i in ids)


def _check_sequence_args(corpus, batch_size, num_steps, needed):
    if int(num_steps) < 1:
        raise ValueError(f"sequence length num_steps must be >= 1, got {num_steps}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(corpus) - 1 < needed:
        raise ValueError(f"corpus of {len(corpus)} tokens is too short for batch_size={batch_size}, "
                         f"num_steps={num_steps} (needs at least {needed + 1})")


def seq_data_iter_random(corpus, batch_size, num_steps, rng):
    """One epoch of (X, Y) batches, each (batch_size, num_steps), from randomly placed windows.

    Y is X shifted by one token. The windows do not overlap; a random offset changes them every epoch.
    """
    corpus = np.asarray(corpus)
    _check_sequence_args(corpus, batch_size, num_steps, num_steps)
    offset = int(rng.integers(0, num_steps))
    corpus = corpus[offset:] if len(corpus) - 1 - offset >= num_steps else corpus
    starts = np.arange(0, len(corpus) - 1 - num_steps + 1, num_steps)
    starts = rng.permutation(starts)
    for k in range(0, len(starts), batch_size):
        s = starts[k:k + batch_size]
        yield (np.stack([corpus[i:i + num_steps] for i in s]),
               np.stack([corpus[i + 1:i + 1 + num_steps] for i in s]))


def seq_data_iter_sequential(corpus, batch_size, num_steps, rng):
    """One epoch of (X, Y) batches where row i of each batch continues row i of the previous one."""
    corpus = np.asarray(corpus)
    _check_sequence_args(corpus, batch_size, num_steps, batch_size * num_steps)
    offset = int(rng.integers(0, num_steps))
    if len(corpus) - 1 - offset < batch_size * num_steps:
        offset = 0
    n = (len(corpus) - 1 - offset) // batch_size * batch_size
    Xs = corpus[offset:offset + n].reshape(batch_size, -1)
    Ys = corpus[offset + 1:offset + 1 + n].reshape(batch_size, -1)
    for t in range(0, Xs.shape[1] - num_steps + 1, num_steps):
        yield Xs[:, t:t + num_steps], Ys[:, t:t + num_steps]


def _check_sequence_input(x, h0, Wx, Wh, gates=1):
    """ValueError unless x (N, T, D) with T >= 1, h0 (N, H), Wx (D, gates H) and Wh (H, gates H) fit together."""
    if np.ndim(x) != 3:
        raise ValueError(f"x must be (N, T, D), got shape {np.shape(x)}")
    if x.shape[1] == 0:
        raise ValueError("sequence length T is 0: a recurrent layer needs at least one time step")
    if np.ndim(h0) != 2 or h0.shape[0] != x.shape[0]:
        raise ValueError(f"h0 must be (N, H) with N = {x.shape[0]}, got shape {np.shape(h0)}")
    D, H = x.shape[2], h0.shape[1]
    if np.shape(Wx) != (D, gates * H) or np.shape(Wh) != (H, gates * H):
        raise ValueError(f"with x of shape {x.shape} and h0 of shape {h0.shape}, Wx must be ({D}, {gates * H}) "
                         f"and Wh ({H}, {gates * H}); got {np.shape(Wx)} and {np.shape(Wh)}")


def rnn_step_forward(x, h_prev, Wx, Wh, b):
    """One step of the simple RNN: h = tanh(x Wx + h_prev Wh + b).

    Inputs:  x (N, D); h_prev (N, H); Wx (D, H); Wh (H, H); b (H,).
    Returns: h (N, H) and a cache for rnn_step_backward.
    """
    h = np.tanh(x @ Wx + h_prev @ Wh + b)
    return h, (x, h_prev, Wx, Wh, h)


def rnn_step_backward(dh, cache):
    """Backward of one RNN step, given dh = dL/dh (N, H).

    Returns: dx (N, D), dh_prev (N, H), dWx (D, H), dWh (H, H), db (H,).
    """
    x, h_prev, Wx, Wh, h = cache
    dz = dh * (1 - h * h)                      # tanh'(z) = 1 - tanh(z)^2
    return dz @ Wx.T, dz @ Wh.T, x.T @ dz, h_prev.T @ dz, dz.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    """The simple RNN over a whole sequence.

    Inputs:  x (N, T, D), N sequences of T steps; h0 (N, H) initial state; Wx (D, H); Wh (H, H); b (H,).
    Returns: h (N, T, H), the hidden state after every step, and a cache for rnn_backward.
    Raises ValueError when T == 0 or the shapes do not fit.
    """
    _check_sequence_input(x, h0, Wx, Wh)
    N, T, _ = x.shape
    h = np.empty((N, T, Wh.shape[0]), dtype=np.result_type(x, Wx))
    steps, h_t = [], h0
    for t in range(T):
        h_t, step_cache = rnn_step_forward(x[:, t], h_t, Wx, Wh, b)
        h[:, t] = h_t
        steps.append(step_cache)
    return h, (Wx, Wh, steps)


def rnn_backward(dh, cache):
    """Backpropagation through time for rnn_forward.

    Inputs:  dh (N, T, H), the gradient of the loss w.r.t. every hidden state; cache from rnn_forward.
    Returns: dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,).
    """
    Wx, Wh, steps = cache
    N, T, H = dh.shape
    dx = np.empty((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H, dtype=dh.dtype)
    dh_next = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dh_next, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dh_next, steps[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dh_next, dWx, dWh, db


def lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b):
    """One LSTM step, gates stacked in PyTorch's order i, f, g, o.

    Inputs:  x (N, D); h_prev, c_prev (N, H); Wx (D, 4H); Wh (H, 4H); b (4H,).
    Returns: h (N, H), c (N, H) and a cache for lstm_step_backward.
    """
    H = h_prev.shape[1]
    a = x @ Wx + h_prev @ Wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c
    return h, c, (x, h_prev, c_prev, Wx, Wh, i, f, g, o, tanh_c)


def lstm_step_backward(dh, dc, cache):
    """Backward of one LSTM step, given dh = dL/dh and dc = dL/dc (both (N, H); dc None means zero).

    Returns: dx (N, D), dh_prev (N, H), dc_prev (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).
    """
    x, h_prev, c_prev, Wx, Wh, i, f, g, o, tanh_c = cache
    dc_total = dh * o * (1 - tanh_c * tanh_c)        # c reaches the loss through h = o tanh(c) ...
    if dc is not None:
        dc_total = dc + dc_total                      # ... and directly (from step t + 1, or the loss)
    da = np.concatenate([dc_total * g * i * (1 - i),          # input gate
                         dc_total * c_prev * f * (1 - f),     # forget gate
                         dc_total * i * (1 - g * g),          # candidate cell g
                         dh * tanh_c * o * (1 - o)], axis=1)  # output gate
    return da @ Wx.T, da @ Wh.T, dc_total * f, x.T @ da, h_prev.T @ da, da.sum(axis=0)


def lstm_forward(x, h0, c0, Wx, Wh, b):
    """An LSTM over a whole sequence.

    Inputs:  x (N, T, D); h0 (N, H); c0 (N, H) or None for zeros; Wx (D, 4H); Wh (H, 4H); b (4H,).
    Returns: h (N, T, H) and c (N, T, H), the states after every step, and a cache for lstm_backward.
    Raises ValueError when T == 0 or the shapes do not fit.
    """
    _check_sequence_input(x, h0, Wx, Wh, gates=4)
    if c0 is not None and np.shape(c0) != h0.shape:
        raise ValueError(f"c0 must have the shape of h0 {h0.shape}, got {np.shape(c0)}")
    N, T, _ = x.shape
    H = Wh.shape[0]
    c_t = np.zeros_like(h0) if c0 is None else c0
    dtype = np.result_type(x, Wx)
    h, c = np.empty((N, T, H), dtype=dtype), np.empty((N, T, H), dtype=dtype)
    steps, h_t = [], h0
    for t in range(T):
        h_t, c_t, step_cache = lstm_step_forward(x[:, t], h_t, c_t, Wx, Wh, b)
        h[:, t], c[:, t] = h_t, c_t
        steps.append(step_cache)
    return h, c, (Wx, Wh, steps)


def lstm_backward(dh, dc, cache):
    """Backpropagation through time for lstm_forward.

    Inputs:  dh (N, T, H) = dL/dh for every step; dc (N, T, H) = dL/dc for every step, or None when the
             loss does not read the cell states; cache from lstm_forward.
    Returns: dx (N, T, D), dh0 (N, H), dc0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).
    """
    Wx, Wh, steps = cache
    N, T, H = dh.shape
    dx = np.empty((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dtype=dh.dtype)
    dh_next, dc_next = np.zeros((N, H), dtype=dh.dtype), np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dc_t = dc_next if dc is None else dc_next + dc[:, t]
        dx[:, t], dh_next, dc_next, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t] + dh_next, dc_t, steps[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dh_next, dc_next, dWx, dWh, db


def gru_step_forward(x, h_prev, Wx, Wh, bx, bh):
    """One GRU step in nn.GRU's form, gates stacked in the order r (reset), z (update), n (candidate).

    Inputs:  x (N, D); h_prev (N, H); Wx (D, 3H); Wh (H, 3H); bx, bh (3H,).
    Returns: h (N, H) = (1 - z) * n + z * h_prev, and a cache for gru_step_backward.
    """
    H = h_prev.shape[1]
    ax = x @ Wx + bx
    ah = h_prev @ Wh + bh
    r = sigmoid(ax[:, :H] + ah[:, :H])
    z = sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
    n = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
    h = (1 - z) * n + z * h_prev
    return h, (x, h_prev, Wx, Wh, r, z, n, ah[:, 2 * H:])


def gru_step_backward(dh, cache):
    """Backward of one GRU step, given dh = dL/dh (N, H).

    Returns: dx (N, D), dh_prev (N, H), dWx (D, 3H), dWh (H, 3H), dbx (3H,), dbh (3H,).
    """
    x, h_prev, Wx, Wh, r, z, n, ah_n = cache
    dn_pre = dh * (1 - z) * (1 - n * n)                 # gradient at the candidate's pre-activation
    dr_pre = dn_pre * ah_n * r * (1 - r)
    dz_pre = dh * (h_prev - n) * z * (1 - z)
    dax = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
    dah = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
    dh_prev = dh * z + dah @ Wh.T
    return dax @ Wx.T, dh_prev, x.T @ dax, h_prev.T @ dah, dax.sum(axis=0), dah.sum(axis=0)


def gru_forward(x, h0, Wx, Wh, bx, bh):
    """A GRU over a whole sequence: x (N, T, D), h0 (N, H) -> h (N, T, H) and a cache for gru_backward.

    Raises ValueError when T == 0 or the shapes do not fit.
    """
    _check_sequence_input(x, h0, Wx, Wh, gates=3)
    N, T, _ = x.shape
    h = np.empty((N, T, Wh.shape[0]), dtype=np.result_type(x, Wx))
    steps, h_t = [], h0
    for t in range(T):
        h_t, step_cache = gru_step_forward(x[:, t], h_t, Wx, Wh, bx, bh)
        h[:, t] = h_t
        steps.append(step_cache)
    return h, (Wx, Wh, steps)


def gru_backward(dh, cache):
    """BPTT for gru_forward: dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, dbx, dbh."""
    Wx, Wh, steps = cache
    N, T, H = dh.shape
    dx = np.empty((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh = np.zeros_like(Wx), np.zeros_like(Wh)
    dbx, dbh = np.zeros(3 * H, dtype=dh.dtype), np.zeros(3 * H, dtype=dh.dtype)
    dh_next = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dh_next, dWx_t, dWh_t, dbx_t, dbh_t = gru_step_backward(dh[:, t] + dh_next, steps[t])
        dWx += dWx_t
        dWh += dWh_t
        dbx += dbx_t
        dbh += dbh_t
    return dx, dh_next, dWx, dWh, dbx, dbh


def clip_gradients(grads, max_norm):
    """Rescale the arrays of the dict `grads` in place so their joint L2 norm is at most max_norm.

    Returns the norm *before* clipping (useful to log). Raises ValueError if max_norm <= 0.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    total = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for g in grads.values():
            g *= scale
    return total


def sample_token(logits, temperature=1.0, rng=None):
    """Draw an index from softmax(logits / temperature); temperature 0 means argmax (greedy).

    Raises ValueError for a negative temperature.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return int(np.argmax(logits))
    p = softmax(logits / temperature)
    rng = np.random.default_rng() if rng is None else rng
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(step, vocab, prefix, num_tokens, temperature=1.0, rng=None, state=None, stop=None):
    """Continue `prefix` by `num_tokens` sampled tokens.

    step(token_id, state) -> (logits (V,), state) advances the model by one token (state None = initial).
    Raises ValueError when the prefix is empty or contains tokens outside the vocabulary
    (they are named); stops early after emitting the token `stop`, if given.
    """
    if len(prefix) == 0:
        raise ValueError("prefix is empty: give at least one token to start from")
    ids = vocab.encode(prefix, strict=True)
    logits = None
    for i in ids:
        logits, state = step(i, state)
    out = list(prefix)
    for _ in range(int(num_tokens)):
        i = sample_token(logits, temperature, rng)
        token = vocab.idx_to_token[i]
        out.append(token)
        if stop is not None and token == stop:
            break
        logits, state = step(i, state)
    return "".join(out)


def numpy_lstm_step(params):
    """step() for generate(): one-hot input, an LSTM step with params Wx, Wh, b, and a W_out, b_out head."""
    V = params["Wx"].shape[0]

    def step(token_id, state):
        if state is None:
            H = params["Wh"].shape[0]
            state = (np.zeros((1, H), params["Wh"].dtype), np.zeros((1, H), params["Wh"].dtype))
        x = np.zeros((1, V), dtype=params["Wx"].dtype)
        x[0, token_id] = 1
        h, c, _ = lstm_step_forward(x, state[0], state[1], params["Wx"], params["Wh"], params["b"])
        return (h @ params["W_out"] + params["b_out"])[0], (h, c)

    return step


HAN = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]"      # CJK ideographs
REGULAR_5 = re.compile(f"(?:{HAN}{{5}}，{HAN}{{5}}。){{2,4}}")             # 4 to 8 lines of five characters


def regular_lines(text):
    """(regular lines, lines) of a poem; a line runs to the next ，or 。(or to the end of the text)."""
    lines = re.findall(r"[^，。]+[，。]?", text.replace("\n", ""))
    shapes = [f"(?:{HAN}{{5}}|{HAN}{{7}})" + ("，" if k % 2 == 0 else "。") for k in range(len(lines))]
    return sum(re.fullmatch(shape, line) is not None for shape, line in zip(shapes, lines)), len(lines)
