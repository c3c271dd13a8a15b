"""NumPy code taught in notebooks/08b_transformer.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch04a import affine_backward, affine_forward
from nndl_helpers.chapters.ch07b import he_normal_init, layernorm_backward, layernorm_forward, normal_init
from nndl_helpers.chapters.ch08a import (BLOCK_PARAMS, causal_mask, init_transformer_block,
                                         multi_head_attention_backward, multi_head_attention_forward,
                                         multi_head_cross_attention_backward, multi_head_cross_attention_forward,
                                         position_wise_ffn_backward, position_wise_ffn_forward,
                                         transformer_block_backward, transformer_block_forward)


def check_token_ids(name, ids, vocab_size, max_len):
    """ids as an integer array (N, T) with 1 <= T <= max_len and every id in [0, vocab_size); else ValueError."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or not 1 <= ids.shape[1] <= max_len:
        raise ValueError(f"{name} must be (N, T) with 1 <= T <= max_len={max_len}, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"{name} token ids must lie in [0, {vocab_size}), got range [{ids.min()}, {ids.max()}]")
    return ids


def embedding_forward(ids, tok_emb, pos_emb):
    """Token plus learned position embedding: h[n, t] = tok_emb[ids[n, t]] + pos_emb[t].

    ids (N, T) integer token ids (they get no gradient); tok_emb (V, D); pos_emb (T_max, D), T <= T_max.
    Returns h (N, T, D) and a cache.
    """
    return tok_emb[ids] + pos_emb[:ids.shape[1]], (ids, tok_emb.shape, pos_emb.shape)


def embedding_backward(dh, cache):
    """Gradients of tok_emb (V, D) and pos_emb (T_max, D), given dh = dL/dh (N, T, D).

    A lookup's backward adds each position's gradient into the row it read: np.add.at, because a token that
    occurs several times must accumulate (plain fancy-index assignment would keep only one of them).
    """
    ids, tok_shape, pos_shape = cache
    dtok = np.zeros(tok_shape, dh.dtype)
    np.add.at(dtok, ids, dh)
    dpos = np.zeros(pos_shape, dh.dtype)
    dpos[:ids.shape[1]] = dh.sum(axis=0)
    return dtok, dpos


class NumpyTransformer:
    """Token + learned position embeddings, pre-LN Transformer blocks, final LayerNorm, linear read-out;
    causal=True adds the causal mask (a language model), False lets every position see all others.

        model = NumpyTransformer(vocab_size=10, max_len=10, d_model=32, num_heads=2, num_layers=2, rng=rng)
        logits, cache = model.forward(X)    # X integer array (N, T) -> logits (N, T, vocab_size)
        loss, grads = model.loss(X, Y)      # mean cross-entropy, integer targets Y (N, T); grads keyed like params
        logits, weights, cache = model.forward(X, return_attention=True)   # weights: (N, h, T, T) per block
    """

    def __init__(self, vocab_size, max_len, d_model, num_heads, num_layers, rng, causal=False, dtype=np.float32):
        self.num_heads, self.num_layers, self.causal, self.max_len = num_heads, num_layers, causal, max_len
        self.params = {"tok_emb": normal_init(vocab_size, d_model, rng, std=0.5).astype(dtype),
                       "pos_emb": normal_init(max_len, d_model, rng, std=0.5).astype(dtype)}
        for layer in range(num_layers):
            block = init_transformer_block(d_model, rng, dtype=dtype, residual_scale=1 / math.sqrt(2 * num_layers))
            self.params |= {f"block{layer}.{k}": v for k, v in block.items()}
        self.params |= {"lnf_gamma": np.ones(d_model, dtype), "lnf_beta": np.zeros(d_model, dtype),
                        "W_out": he_normal_init(d_model, vocab_size, rng, gain=1.0).astype(dtype),
                        "b_out": np.zeros(vocab_size, dtype)}

    def forward(self, X, return_attention=False):
        X = check_token_ids("X", X, self.params["tok_emb"].shape[0], self.max_len)
        mask = causal_mask(X.shape[1]) if self.causal else None
        h, emb_cache = embedding_forward(X, self.params["tok_emb"], self.params["pos_emb"])
        weights, caches = [], []
        for layer in range(self.num_layers):
            block = {k: self.params[f"block{layer}.{k}"] for k in BLOCK_PARAMS}
            h, w, cache = transformer_block_forward(h, block, self.num_heads, mask, return_attention=True)
            weights.append(w)
            caches.append(cache)
        a, lnf_cache = layernorm_forward(h, self.params["lnf_gamma"], self.params["lnf_beta"])
        logits, out_cache = affine_forward(a.reshape(-1, a.shape[-1]), self.params["W_out"], self.params["b_out"])
        logits, cache = logits.reshape(*X.shape, -1), (emb_cache, caches, lnf_cache, out_cache)
        return (logits, weights, cache) if return_attention else (logits, cache)

    def backward(self, dlogits, cache):
        emb_cache, caches, lnf_cache, out_cache = cache
        N, T, V = dlogits.shape
        grads = {}
        da, grads["W_out"], grads["b_out"] = affine_backward(dlogits.reshape(N * T, V), out_cache)
        dh, grads["lnf_gamma"], grads["lnf_beta"] = layernorm_backward(da.reshape(N, T, -1), lnf_cache)
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_block_backward(dh, caches[layer])
            dh = block_grads.pop("x")
            grads |= {f"block{layer}.{k}": v for k, v in block_grads.items()}
        grads["tok_emb"], grads["pos_emb"] = embedding_backward(dh, emb_cache)
        return grads

    def loss(self, X, Y):
        logits, cache = self.forward(X)
        N, T, V = logits.shape
        if np.shape(Y) != (N, T):
            raise ValueError(f"targets Y must have the shape of X, {(N, T)}, got {np.shape(Y)}")
        loss, dlogits = softmax_cross_entropy(logits.reshape(N * T, V), np.asarray(Y).reshape(N * T))  # chapter 3
        return loss, self.backward(dlogits.reshape(N, T, V), cache)

    def __call__(self, X):
        return self.forward(X)[0]


DECODER_BLOCK_PARAMS = ("ln1_gamma", "ln1_beta", "Wq", "Wk", "Wv", "Wo",                       # causal self-attention
                        "ln2_gamma", "ln2_beta", "cross_Wq", "cross_Wk", "cross_Wv", "cross_Wo",  # cross-attention
                        "ln3_gamma", "ln3_beta", "W1", "b1", "W2", "b2")                        # position-wise MLP


def init_decoder_block(D, rng, hidden=None, dtype=np.float64, residual_scale=1.0):
    """Parameters of one pre-LN decoder block (dict over DECODER_BLOCK_PARAMS): those of init_transformer_block,
    plus LN3 and the cross-attention's weights, initialised the same way (N(0, 1/fan_in), gamma=1, beta=0)."""
    p = init_transformer_block(D, rng, hidden, dtype, residual_scale)
    w = lambda gain=1.0: he_normal_init(D, D, rng, gain=gain).astype(dtype)
    p |= {"cross_Wq": w(), "cross_Wk": w(), "cross_Wv": w(), "cross_Wo": w(residual_scale),
          "ln3_gamma": np.ones(D, dtype), "ln3_beta": np.zeros(D, dtype)}
    return {k: p[k] for k in DECODER_BLOCK_PARAMS}


def transformer_decoder_block_forward(x, memory, params, num_heads, memory_mask=None, self_mask=None,
                                      return_attention=False):
    """Pre-LN decoder block (as nn.TransformerDecoderLayer(norm_first=True) with a tanh-GELU MLP, no attention biases):

        h1 = x  + MHA(LN1(x); causal & self_mask)                 masked self-attention over the outputs so far
        h2 = h1 + CrossMHA(LN2(h1), memory; memory_mask)           queries from the decoder, keys/values from memory
        y  = h2 + W2 GELU(W1 LN3(h2) + b1) + b2

    x (N, T, D) the decoder's input; memory (N, S, D) the encoder's output (S may differ from T);
    memory_mask: None or boolean broadcastable to (N, h, T, S), e.g. padding_mask(src_lengths, S);
    self_mask: None or an extra boolean mask broadcastable to (N, h, T, T), combined with the causal mask.
    Returns y (N, T, D) and a cache; with return_attention=True, (y, weights, cache) where weights is
    {"self": (N, h, T, T), "cross": (N, h, T, S)}.
    """
    p = params
    if np.ndim(x) != 3 or np.ndim(memory) != 3 or memory.shape[0] != x.shape[0] or memory.shape[2] != x.shape[2]:
        raise ValueError(f"need x (N, T, D) and memory (N, S, D) with the same N and D, got shapes "
                         f"{np.shape(x)} and {np.shape(memory)}")
    causal = causal_mask(x.shape[1]) if self_mask is None else causal_mask(x.shape[1]) & self_mask
    a, ln1_cache = layernorm_forward(x, p["ln1_gamma"], p["ln1_beta"])
    att, self_weights, self_cache = multi_head_attention_forward(a, p["Wq"], p["Wk"], p["Wv"], p["Wo"], num_heads,
                                                                 causal)
    h1 = x + att
    b, ln2_cache = layernorm_forward(h1, p["ln2_gamma"], p["ln2_beta"])
    cross, cross_weights, cross_cache = multi_head_cross_attention_forward(
        b, memory, p["cross_Wq"], p["cross_Wk"], p["cross_Wv"], p["cross_Wo"], num_heads, memory_mask)
    h2 = h1 + cross
    c, ln3_cache = layernorm_forward(h2, p["ln3_gamma"], p["ln3_beta"])
    f, ffn_cache = position_wise_ffn_forward(c, p["W1"], p["b1"], p["W2"], p["b2"])
    y = h2 + f
    cache = (ln1_cache, self_cache, ln2_cache, cross_cache, ln3_cache, ffn_cache)
    return (y, {"self": self_weights, "cross": cross_weights}, cache) if return_attention else (y, cache)


def transformer_decoder_block_backward(dy, cache):
    """Gradients of transformer_decoder_block_forward: a dict keyed like params (DECODER_BLOCK_PARAMS), plus
    "x" (N, T, D) and "memory" (N, S, D). The memory's gradient comes only through the cross-attention's keys and values."""
    ln1_cache, self_cache, ln2_cache, cross_cache, ln3_cache, ffn_cache = cache
    grads = {}
    dc, grads["W1"], grads["b1"], grads["W2"], grads["b2"] = position_wise_ffn_backward(dy, ffn_cache)
    dh2_ln, grads["ln3_gamma"], grads["ln3_beta"] = layernorm_backward(dc, ln3_cache)
    dh2 = dy + dh2_ln                                     # residual: dy passes straight through
    db, grads["memory"], *dW_cross = multi_head_cross_attention_backward(dh2, cross_cache)
    grads |= dict(zip(("cross_Wq", "cross_Wk", "cross_Wv", "cross_Wo"), dW_cross))
    dh1_ln, grads["ln2_gamma"], grads["ln2_beta"] = layernorm_backward(db, ln2_cache)
    dh1 = dh2 + dh1_ln
    da, grads["Wq"], grads["Wk"], grads["Wv"], grads["Wo"] = multi_head_attention_backward(dh1, self_cache)
    dx_ln, grads["ln1_gamma"], grads["ln1_beta"] = layernorm_backward(da, ln1_cache)
    grads["x"] = dh1 + dx_ln
    return grads


def init_encoder_decoder(src_vocab, tgt_vocab, max_src_len, max_tgt_len, d_model, num_layers, rng, dtype=np.float32):
    """The parameters of NumpyEncoderDecoder (one flat dict, as an optimizer wants it): embedding tables N(0, 0.5^2),
    encoder blocks "enc{l}.*" and decoder blocks "dec{l}.*" whose residual layers are scaled by 1/sqrt(2 L),
    a final LayerNorm for each side, and the read-out W_out, b_out."""
    emb = lambda rows: normal_init(rows, d_model, rng, std=0.5).astype(dtype)
    params = {"src_emb": emb(src_vocab), "src_pos": emb(max_src_len), "tgt_emb": emb(tgt_vocab), "tgt_pos": emb(max_tgt_len)}
    scale = 1 / math.sqrt(2 * num_layers)
    for layer in range(num_layers):
        params |= {f"enc{layer}.{k}": v for k, v in
                   init_transformer_block(d_model, rng, dtype=dtype, residual_scale=scale).items()}
    for layer in range(num_layers):
        params |= {f"dec{layer}.{k}": v for k, v in init_decoder_block(d_model, rng, dtype=dtype, residual_scale=scale).items()}
    return params | {"enc_ln_gamma": np.ones(d_model, dtype), "enc_ln_beta": np.zeros(d_model, dtype),
                     "dec_ln_gamma": np.ones(d_model, dtype), "dec_ln_beta": np.zeros(d_model, dtype),
                     "W_out": he_normal_init(d_model, tgt_vocab, rng, gain=1.0).astype(dtype),
                     "b_out": np.zeros(tgt_vocab, dtype)}


def encoder_forward(src, params, num_layers, num_heads, mask=None, return_attention=False):
    """The encoder of NumpyEncoderDecoder: memory = LN(block_L(... block_1(src_emb[src] + src_pos))).

    src (N, S) token ids; params holds "src_emb", "src_pos", "enc{l}.<BLOCK_PARAMS>" for l < num_layers and
    "enc_ln_gamma", "enc_ln_beta" (other keys are ignored); mask: the key padding mask (N, 1, 1, S) or None.
    Returns memory (N, S, D) and a cache; with return_attention=True, (memory, weights, cache), weights a list
    of one (N, h, S, S) array per block.
    """
    src = check_token_ids("src", src, params["src_emb"].shape[0], params["src_pos"].shape[0])
    h, emb_cache = embedding_forward(src, params["src_emb"], params["src_pos"])
    weights, caches = [], []
    for layer in range(num_layers):
        block = {k: params[f"enc{layer}.{k}"] for k in BLOCK_PARAMS}
        h, w, cache = transformer_block_forward(h, block, num_heads, mask, return_attention=True)
        weights.append(w)
        caches.append(cache)
    memory, ln_cache = layernorm_forward(h, params["enc_ln_gamma"], params["enc_ln_beta"])
    cache = (emb_cache, caches, ln_cache)
    return (memory, weights, cache) if return_attention else (memory, cache)


def encoder_backward(dmemory, cache):
    """Gradients of encoder_forward given dmemory = dL/dmemory: a dict keyed like the params it read."""
    emb_cache, caches, ln_cache = cache
    grads = {}
    dh, grads["enc_ln_gamma"], grads["enc_ln_beta"] = layernorm_backward(dmemory, ln_cache)
    for layer in reversed(range(len(caches))):
        block_grads = transformer_block_backward(dh, caches[layer])
        dh = block_grads.pop("x")
        grads |= {f"enc{layer}.{k}": v for k, v in block_grads.items()}
    grads["src_emb"], grads["src_pos"] = embedding_backward(dh, emb_cache)
    return grads


def decoder_forward(tgt_in, memory, params, num_layers, num_heads, memory_mask=None, return_attention=False):
    """The decoder of NumpyEncoderDecoder: logits = LN(dec_L(... dec_1(tgt_emb[tgt_in] + tgt_pos, memory))) W_out + b_out.

    tgt_in (N, T) token ids; memory (N, S, D) the encoder's output; params holds "tgt_emb", "tgt_pos",
    "dec{l}.<DECODER_BLOCK_PARAMS>", "dec_ln_gamma", "dec_ln_beta", "W_out", "b_out"; memory_mask (N, 1, 1, S).
    Returns logits (N, T, V) and a cache; with return_attention=True, (logits, weights, cache), weights a list
    of one {"self": (N, h, T, T), "cross": (N, h, T, S)} per block.
    """
    tgt_in = check_token_ids("tgt_in", tgt_in, params["tgt_emb"].shape[0], params["tgt_pos"].shape[0])
    N, T = tgt_in.shape
    h, emb_cache = embedding_forward(tgt_in, params["tgt_emb"], params["tgt_pos"])
    weights, caches = [], []
    for layer in range(num_layers):
        block = {k: params[f"dec{layer}.{k}"] for k in DECODER_BLOCK_PARAMS}
        h, w, cache = transformer_decoder_block_forward(h, memory, block, num_heads, memory_mask,
                                                        return_attention=True)
        weights.append(w)
        caches.append(cache)
    a, ln_cache = layernorm_forward(h, params["dec_ln_gamma"], params["dec_ln_beta"])
    logits, out_cache = affine_forward(a.reshape(N * T, -1), params["W_out"], params["b_out"])
    cache = (emb_cache, caches, ln_cache, out_cache)
    return (logits.reshape(N, T, -1), weights, cache) if return_attention else (logits.reshape(N, T, -1), cache)


def decoder_backward(dlogits, cache):
    """Gradients of decoder_forward given dlogits (N, T, V): a dict keyed like the params it read, plus "memory"
    (N, S, D), summed over the blocks, since every decoder block reads the same memory."""
    emb_cache, caches, ln_cache, out_cache = cache
    N, T, V = dlogits.shape
    grads = {}
    da, grads["W_out"], grads["b_out"] = affine_backward(dlogits.reshape(N * T, V), out_cache)
    dh, grads["dec_ln_gamma"], grads["dec_ln_beta"] = layernorm_backward(da.reshape(N, T, -1), ln_cache)
    dmemory = 0.0
    for layer in reversed(range(len(caches))):
        block_grads = transformer_decoder_block_backward(dh, caches[layer])
        dh = block_grads.pop("x")
        dmemory = dmemory + block_grads.pop("memory")
        grads |= {f"dec{layer}.{k}": v for k, v in block_grads.items()}
    grads["tgt_emb"], grads["tgt_pos"] = embedding_backward(dh, emb_cache)
    grads["memory"] = dmemory
    return grads


def greedy_decode(step, state, bos_id, eos_id, max_len, batch_size):
    """Greedy decoding with any model that predicts one token at a time.

    step(tokens, state) -> (logits, state): tokens (B,) ints, the token each row emitted last (first bos_id);
    logits (B, V) NumPy scores of the next token (a PyTorch step returns logits.cpu().numpy()); state whatever
    the model carries between steps (a prefix, hidden states, memory). A row that has emitted eos_id keeps
    emitting it; decoding stops after max_len tokens or once every row has emitted eos_id.
    Returns the generated ids (B, L), int64, L <= max_len, without the leading bos_id.
    """
    if int(max_len) < 1 or int(batch_size) < 1:
        raise ValueError(f"max_len and batch_size must be >= 1, got {max_len} and {batch_size}")
    tokens = np.full(int(batch_size), bos_id, dtype=np.int64)
    done = np.zeros(int(batch_size), dtype=bool)
    out = []
    for _ in range(int(max_len)):
        logits, state = step(tokens, state)
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[0] != len(tokens):
            raise ValueError(f"step must return logits of shape ({len(tokens)}, V), got {logits.shape}")
        tokens = np.where(done, eos_id, logits.argmax(axis=-1)).astype(np.int64)
        out.append(tokens)
        done |= tokens == eos_id
        if done.all():
            break
    return np.stack(out, axis=1)


def key_padding_mask(ids, pad_id):
    """(N, 1, 1, S) boolean mask, True where ids (N, S) is not pad_id (None when pad_id is None); broadcasts against
    scores (N, h, T, S). Raises ValueError when a sequence consists of padding only."""
    if pad_id is None:
        return None
    mask = (np.asarray(ids) != pad_id)[..., None, None, :]
    if not mask.any(axis=-1).all():
        raise ValueError("a source sequence consists of padding only: each needs at least one real token")
    return mask


class NumpyEncoderDecoder:
    """Encoder-decoder Transformer in NumPy (encoder_forward, decoder_forward). Source tokens equal to pad_id are
    hidden from every attention; targets equal to pad_id are left out of the loss. Teacher forcing: tgt_in is the
    target shifted right behind a BOS token.

        model = NumpyEncoderDecoder(11, 13, max_src_len=8, max_tgt_len=9, d_model=32, num_heads=2, num_layers=1,
                                    rng=rng, pad_id=10)
        loss, grads = model.loss(src, tgt_in, tgt_out)   # integer arrays (N, S), (N, T), (N, T)
        logits, cache = model.forward(src, tgt_in)       # (N, T, tgt_vocab); return_attention=True: the weights too
    """

    def __init__(self, src_vocab, tgt_vocab, max_src_len, max_tgt_len, d_model, num_heads, num_layers, rng,
                 pad_id=None, dtype=np.float32):
        self.num_heads, self.num_layers, self.pad_id, self.max_tgt_len = num_heads, num_layers, pad_id, max_tgt_len
        self.params = init_encoder_decoder(src_vocab, tgt_vocab, max_src_len, max_tgt_len, d_model, num_layers, rng,
                                           dtype)

    def forward(self, src, tgt_in, return_attention=False):
        """return_attention=True: (logits, {"encoder": ..., "decoder": ...} as in encoder/decoder_forward, cache)."""
        mask, L, h = key_padding_mask(src, self.pad_id), self.num_layers, self.num_heads
        memory, enc_weights, enc_cache = encoder_forward(src, self.params, L, h, mask, return_attention=True)
        logits, dec_weights, dec_cache = decoder_forward(tgt_in, memory, self.params, L, h, mask, return_attention=True)
        if return_attention:
            return logits, {"encoder": enc_weights, "decoder": dec_weights}, (enc_cache, dec_cache)
        return logits, (enc_cache, dec_cache)

    def backward(self, dlogits, cache):
        grads = decoder_backward(dlogits, cache[1])
        return grads | encoder_backward(grads.pop("memory"), cache[0])

    def loss(self, src, tgt_in, tgt_out):
        logits, cache = self.forward(src, tgt_in)
        N, T, V = logits.shape
        if np.shape(tgt_out) != (N, T):
            raise ValueError(f"tgt_out must have the shape of tgt_in, {(N, T)}, got {np.shape(tgt_out)}")
        y = np.asarray(tgt_out).reshape(N * T)
        keep = np.ones(N * T, bool) if self.pad_id is None else y != self.pad_id
        loss, dz = softmax_cross_entropy(logits.reshape(N * T, V)[keep], y[keep])       # chapter 3
        dlogits = np.zeros((N * T, V), dz.dtype)
        dlogits[keep] = dz
        return loss, self.backward(dlogits.reshape(N, T, V), cache)

    def greedy_decode(self, src, bos_id, eos_id, max_len=None):
        """greedy_decode of the sources: ids (N, L <= max_len), eos_id after EOS. Each step re-reads the prefix."""
        max_len = self.max_tgt_len if max_len is None else int(max_len)
        if not 1 <= max_len <= self.max_tgt_len:
            raise ValueError(f"max_len must lie in [1, {self.max_tgt_len}], got {max_len}")
        mask = key_padding_mask(src, self.pad_id)
        memory, _ = encoder_forward(src, self.params, self.num_layers, self.num_heads, mask)

        def step(tokens, prefix):
            prefix = np.concatenate([prefix, tokens[:, None]], axis=1)
            return decoder_forward(prefix, memory, self.params, self.num_layers, self.num_heads, mask)[0][:, -1], prefix

        return greedy_decode(step, np.zeros((len(memory), 0), np.int64), bos_id, eos_id, max_len, len(memory))

    def __call__(self, src, tgt_in):
        return self.forward(src, tgt_in)[0]
