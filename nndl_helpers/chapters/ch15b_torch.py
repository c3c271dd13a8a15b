"""PyTorch code taught in notebooks/15b_neural_machine_translation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
from nndl_helpers.chapters.ch15b import filter_logits


import torch
import torch.nn as nn


class AdditiveAttention(nn.Module):
    """Chapter 8a's additive_attention_forward as a module: W_q, W_k (no bias) and w.

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


import numpy as np

from nndl_helpers.chapters.ch06 import sample_token
from nndl_helpers.chapters.ch08b import greedy_decode


def ban_tokens(logits, banned):
    """Set the logits of the token ids `banned` (e.g. <unk>, <pad>, <bos>) to -inf so they are never chosen."""
    if len(banned):
        logits = logits.clone()
        logits[..., list(banned)] = float("-inf")
    return logits


@torch.no_grad()
def seq2seq_greedy_decode(model, src, src_len, bos_id, eos_id, max_len, banned=()):
    """Chapter 8b's greedy_decode for a PyTorch model with encode / step (AttentionSeq2Seq, TransformerSeq2Seq).

    src (B, S) padded ids on the model's device, src_len (B,); tokens in `banned` are never produced.
    Returns a list of B id lists (without <eos>) and, if the model reports attention weights, a tensor (B, T, S)
    of them (else None).
    """
    model.eval()
    alphas = []

    def step(tokens, state):                       # NumPy ids in, NumPy logits out: the loop is chapter 8b's
        logits, state = model.step(torch.as_tensor(tokens, device=src.device), state)
        if "alpha" in state:
            alphas.append(state["alpha"])
        return ban_tokens(logits, banned).cpu().double().numpy(), state

    ids = greedy_decode(step, model.encode(src, src_len), bos_id, eos_id, max_len, src.shape[0]).tolist()
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


import math

from nndl_helpers.chapters.ch08a import sinusoidal_positional_encoding


class TransformerSeq2Seq(nn.Module):
    """nn.Transformer encoder-decoder with the encode / step interface of AttentionSeq2Seq.

        state = model.encode(src, src_len);  logits, state = model.step(y_prev, state);  model(src, src_len, tgt_in)
    Token embeddings are scaled by sqrt(d_model) and added to chapter 8a's sinusoidal positional encoding;
    sequences longer than max_len raise ValueError.
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, d_model, nhead, num_layers, dim_feedforward,
                 dropout=0.0, pad_id=1, max_len=64):
        super().__init__()
        self.pad_id, self.d_model = pad_id, d_model
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=pad_id)
        positions = sinusoidal_positional_encoding(max_len, d_model)          # float64 NumPy (max_len, d_model)
        self.register_buffer("positions", torch.from_numpy(positions).float(), persistent=False)
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
