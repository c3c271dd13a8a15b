"""NumPy code taught in notebooks/15_sequence_generation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math
import re
from collections import Counter, defaultdict

import numpy as np

from nndl_helpers.chapters.ch03 import log_softmax, softmax, softmax_cross_entropy
from nndl_helpers.chapters.ch04 import affine_backward, affine_forward
from nndl_helpers.chapters.ch06 import Vocab, gru_step_backward, gru_step_forward, sample_token


def tokenize_words(sentence):
    """English or French sentence -> lower-case word tokens, punctuation marks as tokens of their own.

        tokenize_words("Don't go!")  ->  ["don't", "go", "!"]
    """
    s = sentence.replace("\u202f", " ").replace("\xa0", " ").lower()
    s = re.sub(r"([.,!?;:\"«»()])", r" \1 ", s)
    return s.split()


def tokenize_chars(sentence):
    """Chinese sentence -> its characters, whitespace dropped:  "我很好。" -> ["我", "很", "好", "。"]."""
    return [ch for ch in sentence if not ch.isspace()]


class SeqVocab(Vocab):
    """Chapter 6's Vocab plus the special tokens of sequence models: ids 0-3 = <unk>, <pad>, <bos>, <eos>.

        vocab = SeqVocab([["a", "b"], ["b"]], min_freq=1)     # built from tokenised sentences
        vocab.encode(["b", "zzz"])  ->  [4, 0]                 # unknown tokens -> <unk> (0)
        vocab.tokens([4, 3, 5])     ->  ["b"]                  # stops at <eos>, drops <pad>/<bos>
    """

    PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"

    def __init__(self, sentences, min_freq=1):
        super().__init__([t for s in sentences for t in s], min_freq)
        specials = [self.UNK, self.PAD, self.BOS, self.EOS]
        self.idx_to_token = specials + [t for t in self.idx_to_token if t not in specials]
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}

    pad = property(lambda self: 1)
    bos = property(lambda self: 2)
    eos = property(lambda self: 3)

    def tokens(self, ids):
        """Token strings of `ids`, stopping at the first <eos> and skipping <pad> and <bos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.idx_to_token[i])
        return out


def group_by_source(pairs, tokenize_src, tokenize_tgt, max_src_len, max_tgt_len):
    """Tokenise (source, target) pairs, keep those within the length limits, and group them by source.

    Returns {source token tuple: [target token list, ...]}: a source with several translations
    has several references.
    """
    groups = defaultdict(list)
    for src, tgt in pairs:
        s, t = tokenize_src(src), tokenize_tgt(tgt)
        if 0 < len(s) <= max_src_len and 0 < len(t) <= max_tgt_len:
            groups[tuple(s)].append(t)
    return dict(groups)


def split_by_source(groups, test_fraction, rng):
    """Held-out split by *distinct source sentence*: no test source (nor any of its translations) is trained on.

    Returns train_pairs [(src tokens, tgt tokens), ...] (one pair per translation) and
            test_items  [(src tokens, [reference token lists]), ...].
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    sources = sorted(groups)
    order = rng.permutation(len(sources))
    n_test = max(1, int(round(test_fraction * len(sources))))
    test_items = [(list(sources[i]), groups[sources[i]]) for i in order[:n_test]]
    train_pairs = [(list(sources[i]), t) for i in order[n_test:] for t in groups[sources[i]]]
    return train_pairs, test_items


class NGramLM:
    """n-gram language model over token ids with add-k smoothing and linear interpolation of orders 1..n.

        lm = NGramLM(n=3, k=0.1, lambdas=(0.1, 0.3, 0.6)).fit(train_ids, vocab_size, bos=2, exclude=(1, 2))
        lm.prob(context_ids, token_id);  lm.perplexity(test_ids)

    p(w | h) = sum_m lambdas[m-1] * (c(u_m w) + k) / (c(u_m) + k |V|), u_m = the last m-1 tokens of h
    (padded with `bos` at the sentence start). Each sentence is a list of ids that ends with <eos>.
    `exclude` lists ids never predicted (<pad>, <bos>); |V| counts the others, so p sums to 1 over them.
    lambdas=None means only order n (a plain add-k n-gram). k=0 gives the unsmoothed (MLE) model.
    """

    def __init__(self, n, k=1.0, lambdas=None):
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.n, self.k = int(n), float(k)
        lambdas = [0.0] * (self.n - 1) + [1.0] if lambdas is None else list(lambdas)
        if len(lambdas) != self.n or abs(sum(lambdas) - 1) > 1e-9 or min(lambdas) < 0:
            raise ValueError(f"lambdas must be {self.n} non-negative weights summing to 1, got {lambdas}")
        self.lambdas = lambdas

    def fit(self, sentences, vocab_size, bos, exclude=()):
        self.bos, self.V = bos, vocab_size - len(set(exclude))
        self.counts = Counter()          # n-gram tuple -> count, every order 1..n (context = tuple[:-1])
        self.context_counts = Counter()  # context tuple -> count
        for s in sentences:
            padded = [bos] * (self.n - 1) + list(s)
            for t in range(self.n - 1, len(padded)):
                for m in range(1, self.n + 1):
                    gram = tuple(padded[t - m + 1:t + 1])
                    self.counts[gram] += 1
                    self.context_counts[gram[:-1]] += 1
        return self

    def prob(self, context, token):
        """p(token | context); context is the list of preceding ids in the sentence (may be empty)."""
        history = ([self.bos] * (self.n - 1) + list(context))[len(context):]   # exactly n-1 ids
        p = 0.0
        for m, lam in enumerate(self.lambdas, start=1):
            if lam == 0:
                continue
            u = tuple(history[len(history) - (m - 1):]) if m > 1 else ()
            num = self.counts.get(u + (token,), 0) + self.k
            den = self.context_counts.get(u, 0) + self.k * self.V
            p += lam * (num / den if den > 0 else 0.0)
        return p

    def log_likelihood(self, sentences):
        """(sum of natural-log probabilities, number of predicted tokens); -inf when some p is 0."""
        total, count = 0.0, 0
        for s in sentences:
            for t, token in enumerate(s):
                p = self.prob(s[:t], token)
                total += math.log(p) if p > 0 else -math.inf
                count += 1
        return total, count

    def perplexity(self, sentences):
        total, count = self.log_likelihood(sentences)
        return math.exp(-total / count)


def ngram_counts(tokens, n):
    """Counter of the n-grams (tuples) of a token list."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(candidate, references, max_n=4):
    """Clipped n-gram matches and candidate n-gram totals for n = 1..max_n, the candidate length c,
    and the length r of the reference closest to c (the shorter on a tie)."""
    if len(references) == 0:
        raise ValueError("every candidate needs at least one reference")
    matches, totals = [], []
    for n in range(1, max_n + 1):
        max_ref = Counter()
        for ref in references:
            for gram, count in ngram_counts(ref, n).items():
                max_ref[gram] = max(max_ref[gram], count)
        cand = ngram_counts(candidate, n)
        matches.append(sum(min(count, max_ref[gram]) for gram, count in cand.items()))
        totals.append(max(len(candidate) - n + 1, 0))
    c = len(candidate)
    r = min((abs(len(ref) - c), len(ref)) for ref in references)[1]
    return matches, totals, c, r


def corpus_bleu(candidates, references_list, max_n=4, smooth=False):
    """Corpus BLEU in [0, 1] (Papineni et al. 2002); candidates[i] is scored against references_list[i].

    candidates: list of token lists; references_list: list of lists of token lists (one or more each).
    Clipped matches, totals and the lengths c, r are summed over the corpus, then
        BLEU = BP * exp(mean_n log p_n),  p_n = matches_n / totals_n,  BP = min(1, exp(1 - r / c)).
    smooth=True adds 1 to matches and totals for n >= 2 (Lin & Och 2004), useful for single sentences.
    Returns dict(bleu, precisions, bp, c, r).
    """
    if len(candidates) != len(references_list):
        raise ValueError(f"{len(candidates)} candidates but {len(references_list)} reference sets")
    matches, totals, c, r = np.zeros(max_n), np.zeros(max_n), 0, 0
    for cand, refs in zip(candidates, references_list):
        m, t, ci, ri = bleu_statistics(list(cand), [list(x) for x in refs], max_n)
        matches += m
        totals += t
        c += ci
        r += ri
    if smooth:
        matches[1:] += 1
        totals[1:] += 1
    precisions = np.divide(matches, totals, out=np.zeros(max_n), where=totals > 0)
    bp = 0.0 if c == 0 else min(1.0, math.exp(1 - r / c))
    bleu = 0.0 if precisions.min() == 0 else bp * math.exp(np.mean(np.log(precisions)))
    return {"bleu": float(bleu), "precisions": precisions.tolist(), "bp": float(bp), "c": c, "r": r}


def sentence_bleu(candidate, references, max_n=4, smooth=False):
    """BLEU of one candidate token list against a list of reference token lists."""
    return corpus_bleu([candidate], [references], max_n, smooth)["bleu"]


def masked_softmax(e, mask=None):
    """Softmax over the last axis of scores e (N, S); mask (N, S) is True at real positions, False at padding.

    Padded positions get probability exactly 0. Raises ValueError when the mask's shape differs from e's
    or a row has no real position (nothing to attend to).
    """
    if mask is None:
        return softmax(e)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != e.shape:
        raise ValueError(f"mask has shape {mask.shape} but the scores have shape {e.shape}")
    if not mask.any(axis=-1).all():
        raise ValueError("a row of the mask has no real (True) position: an empty source cannot be attended to")
    return softmax(np.where(mask, e, -np.inf))


def additive_attention_forward(q, K, V, Wq, Wk, w, mask=None):
    """Additive (Bahdanau) attention, one query per row.

    Inputs:  q (N, Dq) queries (the decoder state); K (N, S, Dk) keys; V (N, S, Dv) values;
             Wq (Dq, A), Wk (Dk, A), w (A,) the scoring network; mask (N, S) bool, False = padded position.
    e_j = tanh(q Wq + k_j Wk) w,  alpha = masked softmax of e over j,  c = sum_j alpha_j v_j.
    Returns: c (N, Dv), alpha (N, S) and a cache for additive_attention_backward.
    """
    if q.ndim != 2 or K.ndim != 3 or V.ndim != 3 or K.shape[:2] != V.shape[:2] or K.shape[0] != q.shape[0]:
        raise ValueError(f"need q (N, Dq), K (N, S, Dk), V (N, S, Dv); got {q.shape}, {K.shape}, {V.shape}")
    Z = np.tanh((q @ Wq)[:, None, :] + K @ Wk)           # (N, S, A)
    alpha = masked_softmax(Z @ w, mask)                    # (N, S)
    c = np.einsum("ns,nsd->nd", alpha, V)
    return c, alpha, (q, K, V, Wq, Wk, w, Z, alpha)


def additive_attention_backward(dc, cache, dalpha=None):
    """Backward of additive_attention_forward, given dc = dL/dc (N, Dv) and optionally dL/dalpha (N, S).

    Returns: dq (N, Dq), dK (N, S, Dk), dV (N, S, Dv), dWq (Dq, A), dWk (Dk, A), dw (A,).
    Padded positions receive zero gradient (their alpha is 0).
    """
    q, K, V, Wq, Wk, w, Z, alpha = cache
    dV = alpha[:, :, None] * dc[:, None, :]
    da = np.einsum("nsd,nd->ns", V, dc) + (0 if dalpha is None else dalpha)
    de = alpha * (da - np.sum(alpha * da, axis=1, keepdims=True))      # softmax backward
    dw = np.einsum("nsa,ns->a", Z, de)
    du = de[:, :, None] * w * (1 - Z * Z)                               # at the tanh's input, (N, S, A)
    dWk = np.einsum("nsd,nsa->da", K, du)
    dK = du @ Wk.T
    du_q = du.sum(axis=1)                                               # q is broadcast over the S positions
    return du_q @ Wq.T, dK, dV, q.T @ du_q, dWk, dw


DECODER_PARAMS = ("Wq", "Wk", "w", "Wx", "Wh", "bx", "bh", "W_out", "b_out")


def attention_decoder_step_forward(x, h_prev, enc, mask, params):
    """One step of the attention GRU decoder (Bahdanau et al. 2015) from chapter 6's GRU step.

    Inputs:  x (N, E) embedding of the previous target token; h_prev (N, H) decoder state;
             enc (N, S, He) encoder states (keys = values); mask (N, S) bool or None;
             params: Wq (H, A), Wk (He, A), w (A,), Wx (E + He, 3H), Wh (H, 3H), bx, bh (3H,),
                     W_out (H, V), b_out (V,).
    c, alpha = attention(h_prev, enc, enc);  h = GRU([x, c], h_prev);  logits = h W_out + b_out.
    Returns: logits (N, V), h (N, H), alpha (N, S), cache.
    """
    p = params
    c, alpha, att_cache = additive_attention_forward(h_prev, enc, enc, p["Wq"], p["Wk"], p["w"], mask)
    h, gru_cache = gru_step_forward(np.concatenate([x, c], axis=1), h_prev, p["Wx"], p["Wh"], p["bx"], p["bh"])
    logits, out_cache = affine_forward(h, p["W_out"], p["b_out"])
    return logits, h, alpha, (x.shape[1], att_cache, gru_cache, out_cache)


def attention_decoder_step_backward(dlogits, dh, cache):
    """Backward of attention_decoder_step_forward.

    dlogits (N, V) = dL/dlogits; dh (N, H) = dL/dh from later steps (zeros for the last step).
    Returns a dict of gradients: x, h_prev, enc and every name in DECODER_PARAMS.
    """
    E, att_cache, gru_cache, out_cache = cache
    dh_out, dW_out, db_out = affine_backward(dlogits, out_cache)
    dxc, dh_prev, dWx, dWh, dbx, dbh = gru_step_backward(dh + dh_out, gru_cache)
    dq, dK, dV, dWq, dWk, dw = additive_attention_backward(dxc[:, E:], att_cache)
    return {"x": dxc[:, :E], "h_prev": dh_prev + dq, "enc": dK + dV, "Wq": dWq, "Wk": dWk, "w": dw,
            "Wx": dWx, "Wh": dWh, "bx": dbx, "bh": dbh, "W_out": dW_out, "b_out": db_out}
