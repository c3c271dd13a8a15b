"""NumPy code taught in notebooks/15_sequence_generation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math
import re
from collections import Counter, defaultdict

import numpy as np

from nndl_helpers.chapters.ch03 import softmax, softmax_cross_entropy
from nndl_helpers.chapters.ch04a import affine_backward, affine_forward
from nndl_helpers.chapters.ch06 import Vocab, gru_step_backward, gru_step_forward, sample_token
from nndl_helpers.chapters.ch08a import additive_attention_backward, additive_attention_forward


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
    p(w | h) = sum_m lambdas[m-1] * (c(u_m w) + k) / (c(u_m) + k |V|), u_m = the last m-1 tokens of h (padded
    with `bos` at the sentence start); lambdas=None: order n only (plain add-k); k=0: the unsmoothed (MLE) model.
    Sentences are id lists ending with <eos>; `exclude` = ids never predicted (<pad>, <bos>), left out of |V|.
    """

    def __init__(self, n, k=1.0, lambdas=None):
        if int(n) < 1 or k < 0:
            raise ValueError(f"need an order n >= 1 and a smoothing k >= 0, got n={n}, k={k}")
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


DECODER_PARAMS = ("Wq", "Wk", "w", "Wx", "Wh", "bx", "bh", "W_out", "b_out")


def attention_decoder_step_forward(x, h_prev, enc, mask, params):
    """One step of the attention GRU decoder (Bahdanau et al. 2015) from chapter 6's GRU step.

    Inputs:  x (N, E) embedding of the previous target token; h_prev (N, H) decoder state;
             enc (N, S, He) encoder states (keys = values); mask (N, S) bool (False = padding) or None;
             params: Wq (H, A), Wk (He, A), w (A,), Wx (E + He, 3H), Wh (H, 3H), bx, bh (3H,),
                     W_out (H, V), b_out (V,).
    c, alpha = attention(h_prev, enc, enc);  h = GRU([x, c], h_prev);  logits = h W_out + b_out.
    Returns: logits (N, V), h (N, H), alpha (N, S) and the cache. The attention weights alpha are returned
    for inspection (alignment plots) and take no gradient: the backward takes dlogits and dh only.
    """
    p = params
    c, alpha, att_cache = additive_attention_forward(h_prev, enc, enc, p["Wq"], p["Wk"], p["w"], mask=mask)
    h, gru_cache = gru_step_forward(np.concatenate([x, c], axis=1), h_prev, p["Wx"], p["Wh"], p["bx"], p["bh"])
    logits, out_cache = affine_forward(h, p["W_out"], p["b_out"])
    return logits, h, alpha, (x.shape[1], att_cache, gru_cache, out_cache)


def attention_decoder_step_backward(dlogits, dh, cache):
    """Backward of attention_decoder_step_forward.

    dlogits (N, V) = dL/dlogits; dh (N, H) = dL/dh from later steps (None = zero, as for the last step).
    Returns one dict: the gradient of every parameter under its key in params (DECODER_PARAMS), and of the
    array inputs under their argument names "x", "h_prev" and "enc" (the mask takes none).
    """
    E, att_cache, gru_cache, out_cache = cache
    dh_out, dW_out, db_out = affine_backward(dlogits, out_cache)
    dxc, dh_prev, dWx, dWh, dbx, dbh = gru_step_backward(dh_out if dh is None else dh + dh_out, gru_cache)
    dq, dK, dV, dWq, dWk, dw = additive_attention_backward(dxc[:, E:], att_cache)
    return {"x": dxc[:, :E], "h_prev": dh_prev + dq, "enc": dK + dV, "Wq": dWq, "Wk": dWk, "w": dw,
            "Wx": dWx, "Wh": dWh, "bx": dbx, "bh": dbh, "W_out": dW_out, "b_out": db_out}


def filter_logits(logits, top_k=0, top_p=1.0):
    """Top-k then top-p (nucleus) filtering of one logits vector (V,): removed tokens get -inf.

    top_k = 0 keeps every token; top_p = 1 keeps every token; otherwise the smallest set of most probable
    tokens whose probability sums to at least top_p is kept (always at least the most probable token).
    """
    if int(top_k) < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no limit), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    z = np.array(logits, dtype=np.float64)
    if 0 < top_k < z.size:
        z[np.argsort(-z, kind="stable")[top_k:]] = -np.inf
    if top_p < 1:
        order = np.argsort(-z, kind="stable")
        p = softmax(z[order])
        before = np.cumsum(p) - p                       # probability of the tokens ranked above
        z[order[before >= top_p]] = -np.inf
    return z
