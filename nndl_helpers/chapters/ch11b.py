"""NumPy code taught in notebooks/11b_sequence_models.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np

from nndl_helpers.chapters.ch11a import sample_categorical


def check_hmm(start, trans, emit, obs):
    start, trans, emit = (np.asarray(a, dtype=np.float64) for a in (start, trans, emit))
    K = start.shape[0]
    if start.shape != (K,) or trans.shape != (K, K) or emit.ndim != 2 or emit.shape[0] != K:
        raise ValueError(f"need start (K,), trans (K, K), emit (K, V); got {start.shape}, {trans.shape}, {emit.shape}")
    for name, p in (("start", start), ("trans", trans), ("emit", emit)):
        if np.any(p < 0) or not np.allclose(p.sum(axis=-1), 1.0, atol=1e-8):
            raise ValueError(f"{name} must hold probabilities that sum to 1 along its last axis")
    obs = np.asarray(obs)
    if obs.ndim not in (1, 2) or obs.shape[-1] == 0 or obs.min() < 0 or obs.max() >= emit.shape[1]:
        raise ValueError(f"obs must be a non-empty sequence (T,) or a batch (N, T) of symbols in "
                         f"[0, {emit.shape[1]}), got shape {obs.shape}")
    return start, trans, emit, obs.astype(np.int64)

def hmm_forward(start, trans, emit, obs):
    """Scaled forward algorithm (前向算法) for obs (T,) or a batch (N, T) of equal-length sequences.
    Returns (alpha_hat (..., T, K) = p(y_t | x_1..t), scales c (..., T)), log p(x) = sum(log c).
    A sequence the model gives probability 0 raises ValueError (never NaN)."""
    start, trans, emit, obs = check_hmm(start, trans, emit, obs)
    e = np.moveaxis(emit[:, obs], 0, -1)                    # (..., T, K): p(x_t | y_t = k)
    alpha, c = np.empty(e.shape), np.empty(e.shape[:-1])
    a = start * e[..., 0, :]
    for t in range(obs.shape[-1]):
        if t:
            a = (alpha[..., t - 1, :] @ trans) * e[..., t, :]
        c[..., t] = a.sum(axis=-1)
        if not np.all(c[..., t] > 0):
            raise ValueError(f"the observations have probability 0 under the model (at t = {t})")
        alpha[..., t, :] = a / c[..., t, None]
    return alpha, c

def hmm_backward_messages(trans, emit, obs, scales):
    """Scaled backward algorithm (后向算法): beta_hat (..., T, K), with p(y_t | x) = alpha_hat * beta_hat."""
    e = np.moveaxis(emit[:, np.asarray(obs)], 0, -1)
    beta = np.ones(e.shape)
    for t in range(e.shape[-2] - 2, -1, -1):
        beta[..., t, :] = (e[..., t + 1, :] * beta[..., t + 1, :]) @ trans.T / scales[..., t + 1, None]
    return beta

def hmm_posteriors(start, trans, emit, obs):
    """(log p(x) summed over the batch, gamma (..., T, K) = p(y_t | x), xi (K, K) = sum_t p(y_t, y_t+1 | x)):
    the E-step of Baum-Welch."""
    start, trans, emit, obs = check_hmm(start, trans, emit, obs)
    alpha, c = hmm_forward(start, trans, emit, obs)
    beta = hmm_backward_messages(trans, emit, obs, c)
    e = np.moveaxis(emit[:, obs], 0, -1)
    K = len(start)
    after = (e[..., 1:, :] * beta[..., 1:, :] / c[..., 1:, None]).reshape(-1, K)
    xi = trans * (alpha[..., :-1, :].reshape(-1, K).T @ after)     # sum_t alpha_t(i) A_ij B_j(x_t+1) beta_t+1(j) / c_t+1
    return float(np.log(c).sum()), alpha * beta, xi


def viterbi(log_start, log_trans, log_emit, log_end=None):
    """Viterbi decoding (维特比算法) in log space: log_start (K,), log_trans (K, K), log_emit (T, K) = the score
    of each state at each step (an HMM's log B[:, x_t], or a CRF's emission scores); log_end (K,) optional.
    Returns (best path (T,) of ints, its score). -inf entries forbid states or moves."""
    log_emit = np.asarray(log_emit, dtype=np.float64)
    T, K = log_emit.shape
    delta, back = log_start + log_emit[0], np.zeros((T, K), dtype=np.int64)
    for t in range(1, T):
        scores = delta[:, None] + log_trans          # (previous state, state)
        back[t] = scores.argmax(axis=0)
        delta = scores[back[t], np.arange(K)] + log_emit[t]
    if log_end is not None:
        delta = delta + log_end
    path = np.empty(T, dtype=np.int64)
    path[-1] = delta.argmax()
    if not np.isfinite(delta[path[-1]]):
        raise ValueError("every state sequence has probability 0 (score -inf)")
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path, float(delta[path[-1]])

def safe_log(p):
    """log with log 0 = -inf and no warning: the log-space form of a probability table."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


def baum_welch(sequences, start, trans, emit, n_iter=50, tol=1e-8):
    """Baum-Welch EM for a discrete HMM from the initial (start, trans, emit) on a list of symbol sequences
    (each (T,) or a batch (N, T)). Returns (start, trans, emit, total log-likelihood before each update)."""
    start, trans, emit = (np.array(a, dtype=np.float64) for a in (start, trans, emit))
    history = []
    for _ in range(n_iter):
        n_start, n_trans, n_emit, total = np.zeros_like(start), np.zeros_like(trans), np.zeros_like(emit), 0.0
        for obs in sequences:
            log_lik, gamma, xi = hmm_posteriors(start, trans, emit, obs)
            total += log_lik
            n_start += gamma[..., 0, :].reshape(-1, len(start)).sum(axis=0)
            n_trans += xi
            np.add.at(n_emit.T, np.ravel(obs), gamma.reshape(-1, len(start)))
        history.append(total)
        start = n_start / n_start.sum()
        trans = n_trans / np.maximum(n_trans.sum(axis=1, keepdims=True), 1e-300)
        emit = n_emit / np.maximum(n_emit.sum(axis=1, keepdims=True), 1e-300)
        if len(history) > 1 and history[-1] - history[-2] < tol * abs(history[-1]):
            break
    return start, trans, emit, history

def hmm_sample(start, trans, emit, T, rng):
    """One sequence of length T: (states (T,), observations (T,))."""
    states, obs = np.empty(T, dtype=np.int64), np.empty(T, dtype=np.int64)
    for t in range(T):
        states[t] = sample_categorical(start if t == 0 else trans[states[t - 1]], rng)
        obs[t] = sample_categorical(emit[states[t]], rng)
    return states, obs


TAGS = "BMES"                       # Begin, Middle, End of a word; Single-character word

def words_to_tags(words):
    """['我们', '喜欢', '猫'] -> [0, 3, ...] as indices into TAGS ('BE', 'BE', 'S')."""
    return [TAGS.index(t) for w in words for t in ("S" if len(w) == 1 else "B" + "M" * (len(w) - 2) + "E")]

def tags_to_words(chars, tags):
    """Cut `chars` after every E or S tag (a trailing unfinished word is kept)."""
    words, begin = [], 0
    for i, t in enumerate(tags):
        if TAGS[t] in "ES":
            words.append(chars[begin:i + 1])
            begin = i + 1
    return words + ([chars[begin:]] if begin < len(chars) else [])

def word_spans(words):
    ends = np.cumsum([len(w) for w in words])
    return set(zip(ends - np.array([len(w) for w in words]), ends))

def segmentation_f1(predicted, gold):
    """Word-level precision, recall and F1 (a word counts when both its boundaries are right), pooled over
    a list of predicted and gold segmentations (lists of words) of the same strings."""
    correct = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        correct += len(word_spans(p) & word_spans(g))
        n_pred, n_gold = n_pred + len(p), n_gold + len(g)
    precision, recall = correct / n_pred, correct / n_gold
    return precision, recall, 2 * precision * recall / (precision + recall)

def hmm_segment(text, log_start, log_trans, log_emit, char_index):
    """Segment a string of Han characters with a B/M/E/S HMM in log space; log_emit (4, V+1), the last
    column for characters missing from char_index (all 0: no evidence). Ends in E or S."""
    ids = [char_index.get(ch, log_emit.shape[1] - 1) for ch in text]
    tags, _ = viterbi(log_start, log_trans, log_emit[:, ids].T, log_end=safe_log([0, 0, 1, 1]))
    return tags_to_words(text, tags)


def logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))

def crf_forward(emissions, trans, start, end, mask):
    """log Z(x) of a linear-chain CRF by the forward algorithm in log space, for a padded batch.
    emissions (N, T, K), trans (K, K), start (K,), end (K,), mask (N, T) bool, True on the first
    length_n positions (length >= 1). Returns (log_Z (N,), cache)."""
    N, T, K = emissions.shape
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (N, T) or not mask[:, 0].all() or np.any(mask[:, 1:] > mask[:, :-1]):
        raise ValueError(f"mask must be (N, T) = {(N, T)}, left-aligned with every sequence non-empty")
    if trans.shape != (K, K) or start.shape != (K,) or end.shape != (K,):
        raise ValueError(f"need trans (K, K), start (K,), end (K,) with K = {K}")
    alpha = np.empty((N, T, K))
    alpha[:, 0] = start + emissions[:, 0]
    for t in range(1, T):
        step = logsumexp(alpha[:, t - 1, :, None] + trans, axis=1) + emissions[:, t]
        alpha[:, t] = np.where(mask[:, t, None], step, alpha[:, t - 1])   # padding carries alpha along
    log_Z = logsumexp(alpha[:, -1] + end, axis=1)
    return log_Z, (emissions, trans, start, end, mask, alpha, log_Z)

def crf_backward(dlog_Z, cache):
    """Gradients of sum(dlog_Z * log_Z): the marginals p(y_t = k | x) for demissions, the summed pairwise
    marginals for dtrans, p(y_1) for dstart and p(y_T) for dend, each weighted by dlog_Z."""
    emissions, trans, start, end, mask, alpha, log_Z = cache
    N, T, K = emissions.shape
    beta = np.empty((N, T, K))
    beta[:, -1] = end
    for t in range(T - 2, -1, -1):
        step = logsumexp(trans + (emissions[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
        beta[:, t] = np.where(mask[:, t + 1, None], step, end)   # the last real position looks at `end`
    w = np.asarray(dlog_Z, dtype=np.float64)[:, None, None]
    unary = np.exp(alpha + beta - log_Z[:, None, None]) * mask[..., None]
    pair = np.exp(alpha[:, :-1, :, None] + trans + (emissions[:, 1:] + beta[:, 1:])[:, :, None, :]
                  - log_Z[:, None, None, None]) * mask[:, 1:, None, None]
    last = mask.sum(axis=1) - 1
    return (w * unary, (w[..., None] * pair).sum(axis=(0, 1)), (w[:, 0] * unary[:, 0]).sum(axis=0),
            (w[:, 0] * unary[np.arange(N), last]).sum(axis=0))

def crf_path_score(emissions, tags, trans, start, end, mask):
    """The unnormalised log score of the tag sequences tags (N, T) (padding ignored): (N,)."""
    N, T, _ = emissions.shape
    rows, last = np.arange(N), mask.sum(axis=1) - 1
    score = (np.take_along_axis(emissions, tags[..., None], axis=2)[..., 0] * mask).sum(axis=1)
    score += (trans[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(axis=1)
    return score + start[tags[:, 0]] + end[tags[rows, last]]


class LinearChainCRF:
    """A linear-chain CRF (线性链条件随机场) over character ids X (N, T) (0 = boundary/padding) with K tags.

    params: W_prev, W_cur, W_next (V, K) emission tables for x_t-1, x_t, x_t+1; b (K,); trans (K, K); start, end (K,).
    forward(X, mask) -> (emissions (N, T, K), cache); backward(demissions, cache) -> grads of the tables and b;
    loss(X, tags, mask) -> (mean negative log-likelihood, grads of every param); __call__(X, mask) -> Viterbi tags.
    """

    def __init__(self, vocab_size, n_tags=4, l2=0.0):
        self.l2 = float(l2)
        self.params = {name: np.zeros((vocab_size, n_tags)) for name in ("W_prev", "W_cur", "W_next")}
        self.params |= {"b": np.zeros(n_tags), "trans": np.zeros((n_tags, n_tags)),
                        "start": np.zeros(n_tags), "end": np.zeros(n_tags)}

    def forward(self, X, mask):
        X = np.where(mask, X, 0)
        prev, nxt = np.pad(X, ((0, 0), (1, 0)))[:, :-1], np.pad(X, ((0, 0), (0, 1)))[:, 1:]
        p = self.params
        return p["W_prev"][prev] + p["W_cur"][X] + p["W_next"][nxt] + p["b"], (prev, X, nxt)

    def backward(self, demissions, cache):
        grads = {}
        for name, ids in zip(("W_prev", "W_cur", "W_next"), cache):
            grads[name] = np.zeros_like(self.params[name])
            np.add.at(grads[name], ids.ravel(), demissions.reshape(-1, demissions.shape[-1]))
            grads[name] += self.l2 * self.params[name]
        grads["b"] = demissions.sum(axis=(0, 1))
        return grads

    def loss(self, X, tags, mask):
        mask = np.asarray(mask, dtype=bool)
        tags = np.where(mask, tags, 0)
        N, K, p = len(X), self.params["b"].shape[0], self.params
        emissions, cache = self.forward(X, mask)
        log_Z, crf_cache = crf_forward(emissions, p["trans"], p["start"], p["end"], mask)
        gold = crf_path_score(emissions, tags, p["trans"], p["start"], p["end"], mask)
        l2 = 0.5 * self.l2 * sum(np.sum(p[k] ** 2) for k in ("W_prev", "W_cur", "W_next"))
        demissions, dtrans, dstart, dend = crf_backward(np.full(N, 1.0 / N), crf_cache)   # expected counts
        onehot = np.eye(K)[tags] * mask[..., None] / N                                     # minus empirical
        np.add.at(dtrans, (tags[:, :-1][mask[:, 1:]], tags[:, 1:][mask[:, 1:]]), -1.0 / N)
        np.add.at(dstart, tags[:, 0], -1.0 / N)
        np.add.at(dend, tags[np.arange(N), mask.sum(axis=1) - 1], -1.0 / N)
        grads = self.backward(demissions - onehot, cache) | {"trans": dtrans, "start": dstart, "end": dend}
        return float(np.mean(log_Z - gold)) + l2, grads

    def __call__(self, X, mask):
        emissions, _ = self.forward(X, mask)
        p = self.params
        return [viterbi(p["start"], p["trans"], e[:n], p["end"])[0] for e, n in zip(emissions, mask.sum(axis=1))]


def gaussian_log_pdf(X, mean, cov):
    """log N(x; mean, cov) for the rows of X (N, D), through the Cholesky factor of cov."""
    L = np.linalg.cholesky(cov)
    z = np.linalg.solve(L, (X - mean).T)                      # (D, N)
    return -0.5 * np.sum(z ** 2, axis=0) - np.log(np.diag(L)).sum() - 0.5 * X.shape[1] * np.log(2 * np.pi)

def gmm_em(X, weights, means, covs, n_iter=100, tol=1e-10, reg=1e-6):
    """EM for a Gaussian mixture from the given start. Returns (weights (K,), means (K, D), covs (K, D, D),
    log-likelihood history, ELBO history: after each M-step, with q = the previous E-step's responsibilities)."""
    weights, means, covs = (np.array(a, dtype=np.float64) for a in (weights, means, covs))
    log_liks, elbos = [], []
    for _ in range(n_iter):
        log_joint = np.stack([np.log(w) + gaussian_log_pdf(X, m, c) for w, m, c in zip(weights, means, covs)], axis=1)
        log_px = logsumexp(log_joint, axis=1)
        log_liks.append(float(log_px.sum()))
        r = np.exp(log_joint - log_px[:, None])               # E-step: responsibilities (N, K)
        counts = r.sum(axis=0)                                # M-step
        weights, means = counts / len(X), (r.T @ X) / counts[:, None]
        diff = X[None] - means[:, None]                       # (K, N, D)
        covs = np.einsum("kn,knd,kne->kde", r.T, diff, diff) / counts[:, None, None] + reg * np.eye(X.shape[1])
        new_joint = np.stack([np.log(w) + gaussian_log_pdf(X, m, c) for w, m, c in zip(weights, means, covs)], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            elbos.append(float(np.sum(r * (new_joint - np.log(r)), where=r > 0)))
        if len(log_liks) > 1 and log_liks[-1] - log_liks[-2] < tol * abs(log_liks[-1]):
            break
    return weights, means, covs, log_liks, elbos
