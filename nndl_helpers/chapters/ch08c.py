"""NumPy code taught in notebooks/08c_external_memory.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch03 import softmax


def _as_states(s, name, n=None):
    """s as a float64 array of +1/-1 entries, shape (N,) or (B, N); ValueError otherwise."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim not in (1, 2) or (n is not None and s.shape[-1] != n) or not np.isin(s, (-1.0, 1.0)).all():
        want = "(N,) or (B, N)" + ("" if n is None else f" with N = {n}")
        values = f"values in [{s.min():g}, {s.max():g}]" if s.size else "no values"
        raise ValueError(f"{name} must hold +1/-1 entries of shape {want}; got shape {s.shape}, {values}")
    return s


def hebbian_weights(patterns):
    """Hebbian rule: W = (1/N) sum_p x_p x_p^T with a zero diagonal, for patterns (P, N) of +1/-1."""
    X = np.atleast_2d(_as_states(patterns, "patterns"))
    W = X.T @ X / X.shape[1]
    np.fill_diagonal(W, 0.0)
    return W


def covariance_weights(patterns, *, consensus=0.1):
    """Hebbian rule on the centred patterns x_p - a (a = mean pattern), for biased, correlated patterns.

    W = (1/N) sum_p (x_p - a)(x_p - a)^T, zero diagonal; b = consensus * a - W a, so that the field
    h = W (s - a) + consensus * a measures s against the mean pattern, and a neuron on which all
    stored patterns agree (its row of W is 0) is pulled towards their common value.
    Returns W (N, N) and b (N,).
    """
    X = np.atleast_2d(_as_states(patterns, "patterns"))
    a = X.mean(axis=0)
    C = X - a
    W = C.T @ C / X.shape[1]
    np.fill_diagonal(W, 0.0)
    return W, consensus * a - W @ a


def hopfield_energy(s, W, b=None):
    """E(s) = -1/2 s^T W s - b^T s for one state (N,) (a float) or a batch (B, N) (an array (B,))."""
    s = _as_states(s, "s", len(W))
    b = np.zeros(len(W)) if b is None else np.asarray(b, dtype=np.float64)
    return -0.5 * np.sum((s @ W) * s, axis=-1) - s @ b


def _sign_or_keep(h, s):
    """sgn(h), and the old state s where h == 0 (so that an update never raises the energy)."""
    return np.where(h > 0, 1.0, np.where(h < 0, -1.0, s))


def hopfield_update_async(s, W, b=None, *, rng, max_sweeps=20, trace=False):
    """Asynchronous dynamics: one neuron at a time, in a fresh random order each sweep, until a
    sweep changes nothing (a stable state) or max_sweeps sweeps have run.

    s (N,) or (B, N): B cues updated side by side (same neuron order). The local fields h = s W + b
    are kept up to date: flipping neuron i changes every h_j by (s_i' - s_i) w_ij.
    Returns the final states (shape of s) and, with trace=True, the energy after every single-neuron
    update (steps + 1,) or (B, steps + 1), else None.
    """
    single = np.ndim(s) == 1
    S = np.atleast_2d(_as_states(s, "s", len(W))).copy()
    b = np.zeros(len(W)) if b is None else np.asarray(b, dtype=np.float64)
    H = S @ W + b
    energies = [hopfield_energy(S, W, b)] if trace else None
    for _ in range(max_sweeps):
        flips = 0
        for i in rng.permutation(len(W)):
            new = _sign_or_keep(H[:, i], S[:, i])
            rows = np.flatnonzero(new != S[:, i])
            if rows.size:
                H[rows] += np.outer(new[rows] - S[rows, i], W[i])   # W is symmetric: column i = row i
                S[rows, i] = new[rows]
                flips += rows.size
            if trace:   # E = -1/2 s^T W s - b^T s = -1/2 sum_i s_i (h_i + b_i), from the fields kept above
                energies.append(-0.5 * np.sum(S * (H + b), axis=1))
        if flips == 0:
            break
    energies = None if energies is None else np.array(energies).T
    if single:
        return S[0], None if energies is None else energies[0]
    return S, energies


def hopfield_update_sync(s, W, b=None, *, steps=1):
    """Synchronous dynamics: every neuron at once, s <- sgn(s W + b), `steps` times."""
    S = _as_states(s, "s", len(W))
    b = np.zeros(len(W)) if b is None else np.asarray(b, dtype=np.float64)
    for _ in range(steps):
        S = _sign_or_keep(S @ W + b, S)
    return S


def modern_hopfield_update(xi, X, *, beta):
    """One update of a modern (continuous) Hopfield network: xi_new = X^T softmax(beta X xi).

    xi (N,) or (B, N) states (queries); X (P, N) stored patterns (keys and values); beta > 0.
    Returns xi_new (shape of xi) and the weights softmax(beta X xi) over the P patterns ((P,) or (B, P)).
    """
    xi, X = np.asarray(xi, dtype=np.float64), np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or xi.ndim not in (1, 2) or xi.shape[-1] != X.shape[1]:
        raise ValueError(f"need xi (N,) or (B, N) and patterns X (P, N); got {xi.shape} and {X.shape}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    weights = softmax(beta * (xi @ X.T))
    return weights @ X, weights


def modern_hopfield_energy(xi, X, *, beta):
    """E(xi) = -lse(beta, X xi) + xi^T xi / 2 + log(P) / beta + max_p |x_p|^2 / 2 (>= 0); (B,) for xi (B, N)."""
    xi, X = np.asarray(xi, dtype=np.float64), np.asarray(X, dtype=np.float64)
    z = beta * (xi @ X.T)
    z_max = z.max(axis=-1)
    lse = (z_max + np.log(np.exp(z - z_max[..., None]).sum(axis=-1))) / beta
    return -lse + 0.5 * np.sum(xi * xi, axis=-1) + math.log(len(X)) / beta + 0.5 * np.max(np.sum(X * X, axis=1))


PEOPLE = ("mary", "john", "sandra", "daniel")
PLACES = ("kitchen", "garden", "office", "bathroom", "hallway", "bedroom")
OBJECTS = ("football", "apple", "milk")
QA_VOCAB = ("<pad>", "where", "is", "went", "got") + PEOPLE + PLACES + OBJECTS
QA_WORD_ID = {w: i for i, w in enumerate(QA_VOCAB)}


def make_location_stories(n, rng, *, max_sentences=10, two_fact=0.5):
    """n stories of 2..max_sentences sentences "<person> went <place>" / "<person> got <object>".

    A fraction `two_fact` of them (at random) asks "where is <object>" (two supporting facts: who got
    it, and where that person went last); the others ask "where is <person>" (one fact: where they went last).
    Returns stories (lists of 3-word sentences), questions (3 words), answers (a place), facts (n,) in {1, 2}
    and supports (per story, the indices of its supporting sentences).
    """
    if max_sentences < 2:
        raise ValueError(f"max_sentences must be >= 2, got {max_sentences}")
    stories, questions, answers, facts, supports = [], [], [], [], []
    for _ in range(n):
        length = int(rng.integers(2, max_sentences + 1))
        pick_at = int(rng.integers(1, length)) if rng.random() < two_fact else -1
        place, lines, holder, obj = {}, [], None, None
        for t in range(length):
            if t == pick_at:      # someone who is somewhere already picks up an object
                holder = list(place)[int(rng.integers(len(place)))]
                obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
                lines.append((holder, "got", obj))
            else:
                person = PEOPLE[int(rng.integers(len(PEOPLE)))]
                place[person] = PLACES[int(rng.integers(len(PLACES)))]
                lines.append((person, "went", place[person]))
        subject = holder if holder is not None else list(place)[int(rng.integers(len(place)))]
        last_move = max(t for t, line in enumerate(lines) if line[0] == subject and line[1] == "went")
        stories.append(lines)
        questions.append(("where", "is", obj if holder is not None else subject))
        answers.append(place[subject])
        facts.append(2 if holder is not None else 1)
        supports.append([last_move] + ([pick_at] if holder is not None else []))
    return stories, questions, answers, np.array(facts), supports


def encode_stories(stories, questions, answers, *, max_sentences):
    """Word ids: story (N, max_sentences, 3), slot 0 the most recent sentence, empty slots all 0 (<pad>);
    question (N, 3); answer (N,)."""
    story = np.zeros((len(stories), max_sentences, 3), dtype=np.int64)
    for n, lines in enumerate(stories):
        if len(lines) > max_sentences:
            raise ValueError(f"story {n} has {len(lines)} sentences, more than max_sentences={max_sentences}")
        for slot, line in enumerate(reversed(lines)):
            story[n, slot] = [QA_WORD_ID[w] for w in line]
    question = np.array([[QA_WORD_ID[w] for w in q] for q in questions], dtype=np.int64)
    return story, question, np.array([QA_WORD_ID[w] for w in answers], dtype=np.int64)


from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch08a import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward


def bow_memory_forward(tokens, E, T):
    """Bag-of-words memories with temporal encoding: m[n, i] = sum_j E[tokens[n, i, j]] + T[i].

    tokens (N, M, L) integer word ids (they get no gradient); E (V, d) embeddings; T (M_max, d), M <= M_max.
    Returns m (N, M, d) and a cache.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 3 or not np.issubdtype(tokens.dtype, np.integer) or tokens.shape[1] > len(T):
        raise ValueError(f"tokens must be integer ids (N, M, L) with M <= {len(T)}, got {tokens.dtype} {tokens.shape}")
    return E[tokens].sum(axis=2) + T[:tokens.shape[1]], (tokens, E.shape, T.shape)


def bow_memory_backward(dm, cache):
    """Gradients of E (V, d) and T (M_max, d), given dm = dL/dm (N, M, d): every word of slot i gets dm[n, i]."""
    tokens, e_shape, t_shape = cache
    dE = np.zeros(e_shape, dm.dtype)
    np.add.at(dE, tokens, dm[:, :, None, :])
    dT = np.zeros(t_shape, dm.dtype)
    dT[:tokens.shape[1]] = dm.sum(axis=0)
    return dE, dT


def memory_hop_forward(u, m, c, mask=None):
    """One MemN2N hop: p = softmax(m u / sqrt(d)), o = sum_i p_i c_i, u_next = u + o (chapter 8a's attention).

    u (N, d) queries; m (N, M, d) input memories (keys); c (N, M, d) output memories (values);
    mask None or bool (N, 1, M), False at empty slots. Returns u_next (N, d), p (N, M) and a cache.
    """
    if u.ndim != 2 or m.shape != c.shape or m.shape[0] != u.shape[0] or m.shape[2] != u.shape[1]:
        raise ValueError(f"need u (N, d), m and c (N, M, d); got {u.shape}, {m.shape}, {c.shape}")
    O, A, cache = scaled_dot_product_attention_forward(u[:, None, :], m, c, mask)
    return u + O[:, 0], A[:, 0], cache


def memory_hop_backward(du_next, cache):
    """du, dm, dc given du_next = dL/du_next (N, d); the residual passes du_next to u unchanged."""
    dQ, dK, dV = scaled_dot_product_attention_backward(du_next[:, None, :], cache)
    return du_next + dQ[:, 0], dK, dV


class MemN2N:
    """End-to-end memory network (Sukhbaatar et al., 2015) with `hops` hops and adjacent weight tying.

    params  E0..E{hops} (V, d) word embeddings, T0..T{hops} (max_memories, d) temporal encodings:
            hop k reads keys with (E{k-1}, T{k-1}) and values with (E{k}, T{k}); E0 embeds the question;
            the answer's logits are u^K E{hops}^T over the whole vocabulary.
    forward(story (N, M, L), question (N, Lq)) -> logits (N, V), attention (N, hops, M), cache.
    """

    def __init__(self, vocab_size, embed_dim=20, hops=3, max_memories=10, std=0.1, seed=0, dtype=np.float64):
        if hops < 1 or embed_dim < 1 or max_memories < 1:
            raise ValueError(f"hops, embed_dim and max_memories must be >= 1, got {hops}, {embed_dim}, {max_memories}")
        rng = np.random.default_rng(seed)
        self.vocab_size, self.embed_dim, self.hops, self.max_memories = vocab_size, embed_dim, hops, max_memories
        self.params = {}
        for k in range(hops + 1):
            self.params[f"E{k}"] = (std * rng.standard_normal((vocab_size, embed_dim))).astype(dtype)
            self.params[f"T{k}"] = (std * rng.standard_normal((max_memories, embed_dim))).astype(dtype)

    def forward(self, story, question):
        P, story, question = self.params, np.asarray(story), np.asarray(question)
        if story.ndim != 3 or question.ndim != 2 or len(story) != len(question):
            raise ValueError(f"MemN2N expects story (N, M, L) and question (N, Lq), got {story.shape}, {question.shape}")
        mask = (story != 0).any(axis=-1)[:, None, :]          # (N, 1, M): False at empty slots
        u = P["E0"][question].sum(axis=1)
        caches, attention = [], []
        for k in range(1, self.hops + 1):
            m, m_cache = bow_memory_forward(story, P[f"E{k - 1}"], P[f"T{k - 1}"])
            c, c_cache = bow_memory_forward(story, P[f"E{k}"], P[f"T{k}"])
            u, p, hop_cache = memory_hop_forward(u, m, c, mask)
            caches.append((m_cache, c_cache, hop_cache))
            attention.append(p)
        logits = u @ P[f"E{self.hops}"].T
        return logits, np.stack(attention, axis=1), (question, u, caches)

    def backward(self, dlogits, cache):
        """Gradients of every parameter, a dict keyed like params, given dlogits = dL/dlogits (N, V)."""
        question, u, caches = cache
        K = self.hops
        grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        grads[f"E{K}"] += dlogits.T @ u
        du = dlogits @ self.params[f"E{K}"]
        for k in range(K, 0, -1):
            m_cache, c_cache, hop_cache = caches[k - 1]
            du, dm, dc = memory_hop_backward(du, hop_cache)
            for j, (dE, dT) in ((k - 1, bow_memory_backward(dm, m_cache)), (k, bow_memory_backward(dc, c_cache))):
                grads[f"E{j}"] += dE
                grads[f"T{j}"] += dT
        np.add.at(grads["E0"], question, du[:, None, :])      # the question's bag of words
        return grads

    def loss(self, story, question, answer):
        """Softmax cross-entropy of the answers' word ids (N,), and the gradients of every parameter."""
        logits, _, cache = self.forward(story, question)
        loss, dlogits = softmax_cross_entropy(logits, answer)
        return loss, self.backward(dlogits, cache)

    def __call__(self, story, question):
        return self.forward(story, question)[0]
