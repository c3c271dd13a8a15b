"""Code taught in notebooks/15_sequence_generation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math
import re
from collections import Counter, defaultdict

import numpy as np
import torch
import torch.nn as nn

from nndl_helpers.ch03 import log_softmax, softmax, softmax_cross_entropy
from nndl_helpers.ch04 import affine_backward, affine_forward
from nndl_helpers.ch06 import Vocab, gru_step_backward, gru_step_forward, sample_token


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


def pad_batch(sequences, vocab, bos=False, eos=True):
    """Token lists -> (ids LongTensor (B, L) padded with <pad>, lengths LongTensor (B,)).

    bos / eos add <bos> in front / <eos> at the end; unknown tokens become <unk>.
    """
    rows = [([vocab.bos] if bos else []) + vocab.encode(s) + ([vocab.eos] if eos else []) for s in sequences]
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), vocab.pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids, lengths


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


class AdditiveAttention(nn.Module):
    """additive_attention_forward as a module: W_q, W_k (no bias) and w.

    forward(q (B, Dq), keys (B, S, Dk), values (B, S, Dv), mask (B, S) bool, keys_proj=None) -> c (B, Dv), alpha (B, S).
    keys_proj = W_k(keys) may be passed in, so a decoder projects the encoder states once per sentence.
    """

    def __init__(self, query_dim, key_dim, attn_dim):
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.w = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, q, keys, values, mask=None, keys_proj=None):
        keys_proj = self.W_k(keys) if keys_proj is None else keys_proj
        e = self.w(torch.tanh(self.W_q(q)[:, None, :] + keys_proj)).squeeze(-1)
        if mask is not None:
            e = e.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, dim=-1)
        return torch.bmm(alpha[:, None, :], values).squeeze(1), alpha


class AttentionSeq2Seq(nn.Module):
    """GRU encoder and attention GRU decoder (Bahdanau et al. 2015); its decoder step is
    attention_decoder_step_forward.

        state = model.encode(src (B, S), src_len (B,))      # src padded with pad_id
        logits, state = model.step(y_prev (B,), state)        # one decoder step; state["alpha"] = attention
        logits = model(src, src_len, tgt_in)                  # (B, T, V), teacher forcing
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, embed_dim, hidden_dim, attn_dim=None, dropout=0.0, pad_id=1):
        super().__init__()
        self.pad_id = pad_id
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=pad_id)
        self.encoder = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=pad_id)
        self.attention = AdditiveAttention(hidden_dim, hidden_dim, attn_dim or hidden_dim)
        self.cell = nn.GRUCell(embed_dim + hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, tgt_vocab_size)
        self.dropout = nn.Dropout(dropout)

    def encode(self, src, src_len):
        x = self.dropout(self.src_embed(src))
        packed = nn.utils.rnn.pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.encoder(packed)
        enc, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return {"enc": enc, "keys": self.attention.W_k(enc), "mask": src != self.pad_id, "h": h[0]}

    def _step(self, x, state):
        c, alpha = self.attention(state["h"], state["enc"], state["enc"], state["mask"], state["keys"])
        h = self.cell(torch.cat([x, c], dim=1), state["h"])
        return self.out(self.dropout(h)), {**state, "h": h, "alpha": alpha}

    def step(self, y_prev, state):
        return self._step(self.dropout(self.tgt_embed(y_prev)), state)

    def forward(self, src, src_len, tgt_in):
        state = self.encode(src, src_len)
        x = self.dropout(self.tgt_embed(tgt_in))
        logits = []
        for t in range(tgt_in.shape[1]):
            z, state = self._step(x[:, t], state)
            logits.append(z)
        return torch.stack(logits, dim=1)


def select_state(state, index):
    """Keep (and reorder) the batch rows `index` of every tensor in a decoder state (used by beam search)."""
    return {k: v.index_select(0, index) if torch.is_tensor(v) else v for k, v in state.items()}


def ban_tokens(logits, banned):
    """Set the logits of the token ids `banned` (e.g. <unk>, <pad>, <bos>) to -inf so they are never chosen."""
    if len(banned):
        logits = logits.clone()
        logits[..., list(banned)] = float("-inf")
    return logits


@torch.no_grad()
def greedy_decode(model, src, src_len, bos_id, eos_id, max_len, banned=()):
    """Batched greedy decoding for a model with encode / step (AttentionSeq2Seq, TransformerSeq2Seq).

    Tokens in `banned` are never produced. Returns a list of B id lists (without <eos>) and, if the model reports attention weights,
    a tensor (B, T, S) of them (else None).
    """
    model.eval()
    state = model.encode(src, src_len)
    y = torch.full((src.shape[0],), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
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
    hyps = [row[:row.index(eos_id)] if eos_id in row else row for row in ids]
    return hyps, (torch.stack(alphas, dim=1) if alphas else None)


@torch.no_grad()
def beam_search(model, src_ids, beam_width, bos_id, eos_id, max_len, length_penalty=0.0, banned=()):
    """Beam search for one source sentence (a list of ids, ending with <eos> like the training data).

    Keeps the beam_width most probable prefixes (sum of log-probabilities). A prefix that emits <eos>
    becomes a finished hypothesis; the search stops when beam_width hypotheses have finished or after
    max_len steps. Finished hypotheses are ranked by logp / L**length_penalty, L = length including <eos>.
    Tokens in `banned` are never produced. beam_width = 1 is greedy decoding. Returns [(ids without <eos>, log-probability, ranking score), ...],
    best first.
    """
    if int(beam_width) < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    if len(src_ids) == 0:
        raise ValueError("the source sentence is empty")
    model.eval()
    dev = next(model.parameters()).device
    state = model.encode(torch.tensor([src_ids], device=dev), torch.tensor([len(src_ids)]))
    prefixes, scores, finished = [[]], torch.zeros(1, device=dev), []
    for t in range(max_len):
        last = torch.tensor([p[-1] if p else bos_id for p in prefixes], device=dev)
        logits, state = model.step(last, state)
        logp = torch.log_softmax(ban_tokens(logits.float(), banned), dim=-1)
        V = logp.shape[1]
        candidates = (scores[:, None] + logp).flatten()
        top = torch.topk(candidates, min(2 * beam_width, candidates.numel()))
        keep_rows, new_prefixes, new_scores = [], [], []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            row, token = divmod(flat, V)
            if token == eos_id:
                finished.append((prefixes[row], score))
            else:
                keep_rows.append(row)
                new_prefixes.append(prefixes[row] + [token])
                new_scores.append(score)
            if len(new_prefixes) == beam_width:
                break
        if len(finished) >= beam_width or not new_prefixes:
            break
        state = select_state(state, torch.tensor(keep_rows, device=dev))
        prefixes, scores = new_prefixes, torch.tensor(new_scores, device=dev)
    if not finished:                                    # length limit reached: rank the unfinished prefixes
        finished = list(zip(prefixes, scores.tolist()))
    ranked = [(p, s, s / (len(p) + 1) ** length_penalty) for p, s in finished]
    return sorted(ranked, key=lambda h: -h[2])


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


@torch.no_grad()
def sample_decode(model, src_ids, bos_id, eos_id, max_len, temperature=1.0, top_k=0, top_p=1.0, rng=None,
                  banned=()):
    """Sample a translation token by token from softmax(logits / temperature), after top-k / top-p filtering.

    temperature = 0 is greedy decoding. Returns the sampled ids (without <eos>).
    """
    model.eval()
    dev = next(model.parameters()).device
    state = model.encode(torch.tensor([src_ids], device=dev), torch.tensor([len(src_ids)]))
    y, out = bos_id, []
    for _ in range(max_len):
        logits, state = model.step(torch.tensor([y], device=dev), state)
        z = ban_tokens(logits, banned)[0].float().cpu().numpy()
        y = sample_token(filter_logits(z / temperature if temperature > 0 else z, top_k, top_p),
                         1.0 if temperature > 0 else 0.0, rng)     # chapter 6's sampler
        if y == eos_id:
            break
        out.append(y)
    return out


def translate(model, sentence, src_vocab, tgt_vocab, tokenize, max_src_len, beam_width=1, max_len=30,
              joiner=" ", length_penalty=0.0):
    """Translate one sentence with beam search; returns (translation, source words outside the vocabulary).

    Raises ValueError for an empty sentence and for one longer than max_src_len tokens (the model never saw
    such lengths). Unknown words are read as <unk> and returned so the caller can warn about them; the output
    never contains <unk>, <pad> or <bos>.
    """
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError("the sentence is empty: give at least one word to translate")
    tokens = tokenize(sentence)
    if not tokens:
        raise ValueError(f"no tokens in {sentence!r}: give at least one word to translate")
    if len(tokens) > max_src_len:
        raise ValueError(f"the sentence has {len(tokens)} tokens, but this model was trained on sentences of at most "
                         f"{max_src_len}: split it into shorter sentences")
    unknown = [t for t in tokens if t not in src_vocab]
    best = beam_search(model, src_vocab.encode(tokens) + [src_vocab.eos], beam_width, tgt_vocab.bos,
                       tgt_vocab.eos, max_len, length_penalty, banned=(0, tgt_vocab.pad, tgt_vocab.bos))[0][0]
    return joiner.join(tgt_vocab.tokens(best + [tgt_vocab.eos])), unknown


def sinusoidal_positions(max_len, d_model):
    """Sinusoidal positional encodings (max_len, d_model): P[t, 2i] = sin(t / 10000^(2i/d)), P[t, 2i+1] = cos(...)."""
    angle = np.arange(max_len)[:, None] / 10000 ** (np.arange(0, d_model, 2) / d_model)
    P = np.zeros((max_len, d_model))
    P[:, 0::2] = np.sin(angle)
    P[:, 1::2] = np.cos(angle[:, :d_model // 2])
    return torch.tensor(P, dtype=torch.float32)


class TransformerSeq2Seq(nn.Module):
    """nn.Transformer encoder-decoder with the encode / step interface of AttentionSeq2Seq.

        state = model.encode(src, src_len);  logits, state = model.step(y_prev, state);  model(src, src_len, tgt_in)
    Sequences longer than max_len raise ValueError.
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, d_model, nhead, num_layers, dim_feedforward,
                 dropout=0.0, pad_id=1, max_len=64):
        super().__init__()
        self.pad_id, self.d_model = pad_id, d_model
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=pad_id)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.transformer = nn.Transformer(d_model, nhead, num_layers, num_layers, dim_feedforward, dropout,
                                          batch_first=True, norm_first=True)
        self.out = nn.Linear(d_model, tgt_vocab_size)

    def _embed(self, table, ids):
        if ids.shape[1] > self.positions.shape[0]:
            raise ValueError(f"sequence of length {ids.shape[1]} exceeds max_len={self.positions.shape[0]}")
        return table(ids) * math.sqrt(self.d_model) + self.positions[:ids.shape[1]]

    def encode(self, src, src_len=None):
        mask = src != self.pad_id
        memory = self.transformer.encoder(self._embed(self.src_embed, src), src_key_padding_mask=~mask)
        return {"memory": memory, "mask": mask, "prefix": src.new_zeros((src.shape[0], 0))}

    def decode(self, tgt_in, state):
        T = tgt_in.shape[1]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tgt_in.device), diagonal=1)
        y = self.transformer.decoder(self._embed(self.tgt_embed, tgt_in), state["memory"], tgt_mask=causal,
                                     memory_key_padding_mask=~state["mask"])
        return self.out(y)

    def step(self, y_prev, state):
        prefix = torch.cat([state["prefix"], y_prev[:, None]], dim=1)
        return self.decode(prefix, state)[:, -1], {**state, "prefix": prefix}

    def forward(self, src, src_len, tgt_in):
        return self.decode(tgt_in, self.encode(src, src_len))
