"""NumPy code taught in notebooks/15a_language_models_and_seq2seq.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math
import re
from collections import Counter, defaultdict

import numpy as np

from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch04a import affine_backward, affine_forward
from nndl_helpers.chapters.ch06 import Vocab, gru_backward, gru_forward, gru_step_backward, gru_step_forward
from nndl_helpers.chapters.ch07b import init_weight, orthogonal_init
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


def prepare_translation(pairs, tokenize_src, tokenize_tgt, max_src_len, max_tgt_len, test_fraction=0.1, min_freq=1,
                        n_train=None, seed=0):
    """group_by_source, split_by_source (rng seed `seed`), an optional random subset of n_train training pairs
    (rng seed + 1), and vocabularies built from the training pairs alone.

    Returns train_pairs, test_items, src_vocab, tgt_vocab.
    """
    groups = group_by_source(pairs, tokenize_src, tokenize_tgt, max_src_len, max_tgt_len)
    train_pairs, test_items = split_by_source(groups, test_fraction, np.random.default_rng(seed))
    if n_train is not None and len(train_pairs) > n_train:
        keep = np.random.default_rng(seed + 1).permutation(len(train_pairs))[:n_train]
        train_pairs = [train_pairs[i] for i in sorted(keep)]
    return train_pairs, test_items, SeqVocab([s for s, _ in train_pairs], min_freq), \
        SeqVocab([t for _, t in train_pairs], min_freq)


def pad_ids(sequences, vocab, bos=False, eos=True):
    """Token lists -> (ids (B, L) int64 padded with <pad>, lengths (B,) int64).

    bos / eos add <bos> in front / <eos> at the end; unknown tokens become <unk>.
    """
    rows = [([vocab.bos] if bos else []) + vocab.encode(s) + ([vocab.eos] if eos else []) for s in sequences]
    if not rows or min(len(r) for r in rows) == 0:
        raise ValueError("pad_ids needs at least one sequence, and no empty one without bos/eos")
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.full((len(rows), int(lengths.max())), vocab.pad, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, lengths


def pad_pairs(pairs, src_vocab, tgt_vocab):
    """Pad (source, target) pairs once: src (ends with <eos>), src_len, tgt_in = <bos> target,
    tgt_out = target <eos>, tgt_len. A language model reads the targets alone: tgt_in -> tgt_out."""
    src, src_len = pad_ids([s for s, _ in pairs], src_vocab)
    tgt_in, tgt_len = pad_ids([t for _, t in pairs], tgt_vocab, bos=True, eos=False)
    tgt_out, _ = pad_ids([t for _, t in pairs], tgt_vocab, bos=False, eos=True)
    return src, src_len, tgt_in, tgt_out, tgt_len


def seq2seq_batches(data, batch_size, rng=None):
    """(src, src_len, tgt_in, tgt_out) minibatches of pad_pairs' data, each cut to its longest sequences;
    shuffled when a NumPy Generator `rng` is given. The arrays may be tensors (torch_pairs): a minibatch
    indexes them where they are (a GPU), no copy per step."""
    src, src_len, tgt_in, tgt_out, tgt_len = data
    order = np.arange(len(src_len)) if rng is None else rng.permutation(len(src_len))
    for k in range(0, len(order), batch_size):
        rows = order[k:k + batch_size]
        S, T = int(src_len[rows].max()), int(tgt_len[rows].max())
        yield src[rows, :S], src_len[rows], tgt_in[rows, :T], tgt_out[rows, :T]


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


def seq2seq_forward(src, src_len, tgt_in, params, pad_id=1):
    """The attention encoder-decoder with teacher forcing, NumPy.

    src (N, S) ids padded with pad_id, src_len (N,), tgt_in (N, T) = <bos> y_1 ... y_{T-1}; params as
    NumpySeq2Seq.params. Returns logits (N, T, V) and the cache for seq2seq_backward.
    """
    p, N = params, src.shape[0]
    enc, enc_cache = gru_forward(p["src_embed"][src], np.zeros((N, p["enc_Wh"].shape[0]), p["enc_Wh"].dtype),
                                 p["enc_Wx"], p["enc_Wh"], p["enc_bx"], p["enc_bh"])
    mask, last = src != pad_id, np.asarray(src_len) - 1
    h = enc[np.arange(N), last]                                   # the encoder state after the last real token
    dec = {k: p[k] for k in DECODER_PARAMS}
    x_tgt = p["tgt_embed"][tgt_in]                                # (N, T, E)
    logits, steps = [], []
    for t in range(tgt_in.shape[1]):
        z, h, _, step_cache = attention_decoder_step_forward(x_tgt[:, t], h, enc, mask, dec)
        logits.append(z)
        steps.append(step_cache)
    return np.stack(logits, axis=1), (src, tgt_in, last, enc.shape, enc_cache, steps, p)


def seq2seq_backward(dlogits, cache):
    """BPTT through decoder and encoder: dlogits (N, T, V) -> grads, one dict keyed like params."""
    src, tgt_in, last, enc_shape, enc_cache, steps, p = cache
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    denc, dh = np.zeros(enc_shape, dlogits.dtype), None
    dx_tgt = np.zeros(tgt_in.shape + (p["tgt_embed"].shape[1],), dlogits.dtype)
    for t in reversed(range(len(steps))):
        g = attention_decoder_step_backward(dlogits[:, t], dh, steps[t])
        for k in DECODER_PARAMS:
            grads[k] += g[k]
        dx_tgt[:, t], dh, denc = g["x"], g["h_prev"], denc + g["enc"]
    denc[np.arange(len(last)), last] += dh                        # the decoder's initial state
    dx_src, _, grads["enc_Wx"], grads["enc_Wh"], grads["enc_bx"], grads["enc_bh"] = gru_backward(denc, enc_cache)
    np.add.at(grads["src_embed"], src, dx_src)                    # an embedding's backward: scatter-add
    np.add.at(grads["tgt_embed"], tgt_in, dx_tgt)
    return grads


class NumpySeq2Seq:
    """GRU encoder + attention GRU decoder (Bahdanau et al. 2015), NumPy only: chapter 6's GRU, chapter 8a's
    additive attention, chapter 7b's initializers.

        model = NumpySeq2Seq(len(src_vocab), len(tgt_vocab), embed_dim=32, hidden_dim=64, seed=0)
        loss, grads = model.loss(src, src_len, tgt_in, tgt_out)   # mean cross-entropy per real target token
        state = model.encode(src, src_len);  logits, state = model.step(y_prev, state)   # decoding
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, embed_dim, hidden_dim, attn_dim=None, seed=0,
                 dtype=np.float32, pad_id=1):
        rng, E, H, A = np.random.default_rng(seed), embed_dim, hidden_dim, attn_dim or hidden_dim
        xavier = lambda fan_in, fan_out: init_weight("xavier_uniform", fan_in, fan_out, rng)
        recurrent = lambda: np.concatenate([orthogonal_init(H, H, rng) for _ in range(3)], axis=1)
        params = {"src_embed": rng.normal(0, 0.1, (src_vocab_size, E)),
                  "enc_Wx": xavier(E, 3 * H), "enc_Wh": recurrent(), "enc_bx": np.zeros(3 * H), "enc_bh": np.zeros(3 * H),
                  "tgt_embed": rng.normal(0, 0.1, (tgt_vocab_size, E)),
                  "Wq": xavier(H, A), "Wk": xavier(H, A), "w": rng.normal(0, 1 / math.sqrt(A), A),
                  "Wx": xavier(E + H, 3 * H), "Wh": recurrent(), "bx": np.zeros(3 * H), "bh": np.zeros(3 * H),
                  "W_out": xavier(H, tgt_vocab_size), "b_out": np.zeros(tgt_vocab_size)}
        self.params = {k: v.astype(dtype) for k, v in params.items()}
        self.pad_id = pad_id

    def forward(self, src, src_len, tgt_in):
        return seq2seq_forward(src, src_len, tgt_in, self.params, self.pad_id)

    def backward(self, dlogits, cache):
        return seq2seq_backward(dlogits, cache)

    def loss(self, src, src_len, tgt_in, tgt_out):
        logits, cache = self.forward(src, src_len, tgt_in)
        real = tgt_out != self.pad_id                             # padded positions are not predicted
        loss, dz = softmax_cross_entropy(logits[real], tgt_out[real])
        dlogits = np.zeros_like(logits)
        dlogits[real] = dz
        return loss, self.backward(dlogits, cache)

    def __call__(self, src, src_len, tgt_in):
        return self.forward(src, src_len, tgt_in)[0]

    def encode(self, src, src_len):
        p, N = self.params, src.shape[0]
        enc, _ = gru_forward(p["src_embed"][src], np.zeros((N, p["enc_Wh"].shape[0]), p["enc_Wh"].dtype),
                             p["enc_Wx"], p["enc_Wh"], p["enc_bx"], p["enc_bh"])
        return {"enc": enc, "mask": src != self.pad_id, "h": enc[np.arange(N), np.asarray(src_len) - 1]}

    def step(self, y_prev, state):
        """One decoder step for decoding: y_prev (N,) ids -> logits (N, V) and the next state."""
        dec = {k: self.params[k] for k in DECODER_PARAMS}
        logits, h, alpha, _ = attention_decoder_step_forward(self.params["tgt_embed"][y_prev], state["h"],
                                                             state["enc"], state["mask"], dec)
        return logits, {**state, "h": h, "alpha": alpha}


def nearest_neighbour_translations(train_pairs, items):
    """A memorising baseline: for each source of `items`, the target of the training pair whose source shares the
    most words with it (Jaccard overlap of the word sets; the first such pair on a tie)."""
    words = {w: i for i, w in enumerate(sorted({w for s, _ in train_pairs for w in s}))}

    def bags(sources):
        out = np.zeros((len(sources), len(words)), dtype=np.float32)
        for row, s in enumerate(sources):
            out[row, [words[w] for w in set(s) if w in words]] = 1
        return out

    A, B = bags([s for s, _ in items]), bags([s for s, _ in train_pairs])
    overlap = A @ B.T
    jaccard = overlap / np.maximum(A.sum(1)[:, None] + B.sum(1)[None, :] - overlap, 1)
    return [train_pairs[j][1] for j in jaccard.argmax(axis=1)]
