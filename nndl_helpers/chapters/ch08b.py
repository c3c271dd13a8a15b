"""NumPy code taught in notebooks/08b_transformer.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import math

import numpy as np

from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch04 import affine_backward, affine_forward, gelu_backward, gelu_forward
from nndl_helpers.chapters.ch07b import layernorm_backward, layernorm_forward
from nndl_helpers.chapters.ch08a import (BLOCK_PARAMS, causal_mask, init_transformer_block,
                                         multi_head_attention_backward, multi_head_attention_forward,
                                         multi_head_cross_attention_backward, multi_head_cross_attention_forward,
                                         transformer_block_backward, transformer_block_forward)


class NumpyTransformer:
    """Token + learned position embeddings, pre-LN Transformer blocks, final LayerNorm, linear read-out.

        model = NumpyTransformer(vocab_size=10, max_len=10, d_model=32, num_heads=2, num_layers=2, rng=rng)
        loss, grads = model.loss(X, Y)        # X, Y integer arrays (N, T); grads keyed like model.params
        logits = model.forward(X)[0]          # (N, T, vocab_size)

    causal=True adds the causal mask (a language model); False lets every position see all others.
    """

    def __init__(self, vocab_size, max_len, d_model, num_heads, num_layers, rng, causal=False, dtype=np.float32):
        self.num_heads, self.num_layers, self.causal, self.max_len = num_heads, num_layers, causal, max_len
        self.params = {"tok_emb": (0.5 * rng.standard_normal((vocab_size, d_model))).astype(dtype),
                       "pos_emb": (0.5 * rng.standard_normal((max_len, d_model))).astype(dtype)}
        for layer in range(num_layers):
            block = init_transformer_block(d_model, rng, dtype=dtype, residual_scale=1 / math.sqrt(2 * num_layers))
            self.params.update({f"block{layer}.{k}": v for k, v in block.items()})
        self.params.update({"lnf_gamma": np.ones(d_model, dtype), "lnf_beta": np.zeros(d_model, dtype),
                            "W_out": (rng.standard_normal((d_model, vocab_size)) / math.sqrt(d_model)).astype(dtype),
                            "b_out": np.zeros(vocab_size, dtype)})

    def block(self, layer):
        return {k: self.params[f"block{layer}.{k}"] for k in BLOCK_PARAMS}

    def forward(self, X):
        """Logits (N, T, V) for integer inputs X (N, T), and the caches for backward."""
        X = np.asarray(X)
        if X.ndim != 2 or not 1 <= X.shape[1] <= self.max_len:
            raise ValueError(f"X must be (N, T) with 1 <= T <= max_len={self.max_len}, got shape {X.shape}")
        V = self.params["tok_emb"].shape[0]
        if X.min() < 0 or X.max() >= V:
            raise ValueError(f"token ids must lie in [0, {V}), got range [{X.min()}, {X.max()}]")
        N, T = X.shape
        mask = causal_mask(T) if self.causal else None
        h = self.params["tok_emb"][X] + self.params["pos_emb"][:T]
        caches = []
        for layer in range(self.num_layers):
            h, cache = transformer_block_forward(h, self.block(layer), self.num_heads, mask)
            caches.append(cache)
        a, lnf_cache = layernorm_forward(h, self.params["lnf_gamma"], self.params["lnf_beta"])
        logits, out_cache = affine_forward(a.reshape(N * T, -1), self.params["W_out"], self.params["b_out"])
        return logits.reshape(N, T, V), (X, caches, lnf_cache, out_cache)

    def backward(self, dlogits, cache):
        """Gradients of every parameter, given dlogits = dL/dlogits (N, T, V)."""
        X, caches, lnf_cache, out_cache = cache
        N, T, V = dlogits.shape
        grads = {}
        da, grads["W_out"], grads["b_out"] = affine_backward(dlogits.reshape(N * T, V), out_cache)
        dh, grads["lnf_gamma"], grads["lnf_beta"] = layernorm_backward(da.reshape(N, T, -1), lnf_cache)
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_block_backward(dh, caches[layer])
            dh = block_grads.pop("x")
            grads.update({f"block{layer}.{k}": v for k, v in block_grads.items()})
        grads["tok_emb"] = np.zeros_like(self.params["tok_emb"])
        np.add.at(grads["tok_emb"], X, dh)                       # rows of repeated tokens accumulate
        grads["pos_emb"] = np.zeros_like(self.params["pos_emb"])
        grads["pos_emb"][:T] = dh.sum(axis=0)
        return grads

    def loss(self, X, Y):
        """Mean cross-entropy over all N*T positions, and the gradients of every parameter."""
        logits, cache = self.forward(X)
        N, T, V = logits.shape
        if np.shape(Y) != (N, T):
            raise ValueError(f"targets Y must have the shape of X, {(N, T)}, got {np.shape(Y)}")
        loss, dlogits = softmax_cross_entropy(logits.reshape(N * T, V), np.asarray(Y).reshape(N * T))  # chapter 3
        return loss, self.backward(dlogits.reshape(N, T, V), cache)


DECODER_BLOCK_PARAMS = ("ln1_gamma", "ln1_beta", "Wq", "Wk", "Wv", "Wo",                       # causal self-attention
                        "ln2_gamma", "ln2_beta", "cross_Wq", "cross_Wk", "cross_Wv", "cross_Wo",  # cross-attention
                        "ln3_gamma", "ln3_beta", "W1", "b1", "W2", "b2")                        # position-wise MLP


def init_decoder_block(D, rng, hidden=None, dtype=np.float64, residual_scale=1.0):
    """Parameters of one pre-LN decoder block (dict over DECODER_BLOCK_PARAMS): those of init_transformer_block,
    plus LN3 and the cross-attention's weights, initialised the same way (N(0, 1/fan_in), gamma=1, beta=0)."""
    p = init_transformer_block(D, rng, hidden, dtype, residual_scale)
    w = lambda s=1.0: (s * rng.standard_normal((D, D)) / math.sqrt(D)).astype(dtype)
    p |= {"cross_Wq": w(), "cross_Wk": w(), "cross_Wv": w(), "cross_Wo": w(residual_scale),
          "ln3_gamma": np.ones(D, dtype), "ln3_beta": np.zeros(D, dtype)}
    return {k: p[k] for k in DECODER_BLOCK_PARAMS}


def transformer_decoder_block_forward(x, memory, params, num_heads, memory_mask=None, self_mask=None):
    """Pre-LN decoder block (as nn.TransformerDecoderLayer(norm_first=True) with a tanh-GELU MLP, no attention biases):

        h1 = x  + MHA(LN1(x); causal & self_mask)                 masked self-attention over the outputs so far
        h2 = h1 + CrossMHA(LN2(h1), memory; memory_mask)           queries from the decoder, keys/values from memory
        y  = h2 + W2 GELU(W1 LN3(h2) + b1) + b2

    x (N, T, D) the decoder's input; memory (N, S, D) the encoder's output (S may differ from T);
    memory_mask: None or boolean broadcastable to (N, h, T, S), e.g. padding_mask(src_lengths, S);
    self_mask: None or an extra boolean mask broadcastable to (N, h, T, T), combined with the causal mask.
    Returns y (N, T, D) and a cache.
    """
    p = params
    if np.ndim(x) != 3 or np.ndim(memory) != 3 or memory.shape[0] != x.shape[0] or memory.shape[2] != x.shape[2]:
        raise ValueError(f"need x (N, T, D) and memory (N, S, D) with the same N and D, got shapes "
                         f"{np.shape(x)} and {np.shape(memory)}")
    N, T, D = x.shape
    causal = causal_mask(T) if self_mask is None else causal_mask(T) & self_mask
    a, ln1_cache = layernorm_forward(x, p["ln1_gamma"], p["ln1_beta"])
    att, self_cache = multi_head_attention_forward(a, p["Wq"], p["Wk"], p["Wv"], p["Wo"], num_heads, causal)
    h1 = x + att
    b, ln2_cache = layernorm_forward(h1, p["ln2_gamma"], p["ln2_beta"])
    cross, cross_cache = multi_head_cross_attention_forward(b, memory, p["cross_Wq"], p["cross_Wk"], p["cross_Wv"],
                                                            p["cross_Wo"], num_heads, memory_mask)
    h2 = h1 + cross
    c, ln3_cache = layernorm_forward(h2, p["ln3_gamma"], p["ln3_beta"])
    z1, fc1_cache = affine_forward(c.reshape(N * T, D), p["W1"], p["b1"])
    g, gelu_cache = gelu_forward(z1)
    z2, fc2_cache = affine_forward(g, p["W2"], p["b2"])
    y = h2 + z2.reshape(N, T, D)
    return y, (ln1_cache, self_cache, ln2_cache, cross_cache, ln3_cache, fc1_cache, gelu_cache, fc2_cache, (N, T, D))


def transformer_decoder_block_backward(dy, cache):
    """Gradients of transformer_decoder_block_forward: a dict with "x" (N, T, D), "memory" (N, S, D) and one
    entry per parameter. The memory's gradient comes only through the cross-attention's keys and values."""
    ln1_cache, self_cache, ln2_cache, cross_cache, ln3_cache, fc1_cache, gelu_cache, fc2_cache, (N, T, D) = cache
    grads = {}
    dg, grads["W2"], grads["b2"] = affine_backward(dy.reshape(N * T, D), fc2_cache)
    dc, grads["W1"], grads["b1"] = affine_backward(gelu_backward(dg, gelu_cache), fc1_cache)
    dh2_ln, grads["ln3_gamma"], grads["ln3_beta"] = layernorm_backward(dc.reshape(N, T, D), ln3_cache)
    dh2 = dy + dh2_ln                                     # residual: dy passes straight through
    cross = multi_head_cross_attention_backward(dh2, cross_cache)
    grads.update({"cross_" + k: cross["d" + k] for k in ("Wq", "Wk", "Wv", "Wo")})
    dh1_ln, grads["ln2_gamma"], grads["ln2_beta"] = layernorm_backward(cross["dx_q"], ln2_cache)
    dh1 = dh2 + dh1_ln
    att = multi_head_attention_backward(dh1, self_cache)
    grads.update({k: att["d" + k] for k in ("Wq", "Wk", "Wv", "Wo")})
    dx_ln, grads["ln1_gamma"], grads["ln1_beta"] = layernorm_backward(att["dx"], ln1_cache)
    grads["x"] = dh1 + dx_ln
    grads["memory"] = cross["dx_kv"]
    return grads


class NumpyEncoderDecoder:
    """Encoder-decoder Transformer in NumPy: pre-LN encoder blocks over the source, pre-LN decoder blocks
    (causal self-attention, cross-attention to the encoder's output, MLP) over the target, linear read-out.

        model = NumpyEncoderDecoder(src_vocab=11, tgt_vocab=13, max_src_len=8, max_tgt_len=9, d_model=32,
                                    num_heads=2, num_layers=1, rng=rng, pad_id=10)
        loss, grads = model.loss(src, tgt_in, tgt_out)   # integer arrays (N, S), (N, T), (N, T)
        logits = model.forward(src, tgt_in)[0]           # (N, T, tgt_vocab)

    Source tokens equal to pad_id are hidden from every attention (key padding); targets equal to pad_id are
    left out of the loss. Training uses teacher forcing: tgt_in is the target shifted right behind a BOS token.
    """

    def __init__(self, src_vocab, tgt_vocab, max_src_len, max_tgt_len, d_model, num_heads, num_layers, rng,
                 pad_id=None, dtype=np.float32):
        self.num_heads, self.num_layers, self.pad_id = num_heads, num_layers, pad_id
        self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
        emb = lambda rows: (0.5 * rng.standard_normal((rows, d_model))).astype(dtype)
        self.params = {"src_emb": emb(src_vocab), "src_pos": emb(max_src_len),
                       "tgt_emb": emb(tgt_vocab), "tgt_pos": emb(max_tgt_len)}
        scale = 1 / math.sqrt(2 * num_layers)
        for layer in range(num_layers):
            self.params |= {f"enc{layer}.{k}": v for k, v in
                            init_transformer_block(d_model, rng, dtype=dtype, residual_scale=scale).items()}
        for layer in range(num_layers):
            self.params |= {f"dec{layer}.{k}": v for k, v in
                            init_decoder_block(d_model, rng, dtype=dtype, residual_scale=scale).items()}
        self.params |= {"enc_ln_gamma": np.ones(d_model, dtype), "enc_ln_beta": np.zeros(d_model, dtype),
                        "dec_ln_gamma": np.ones(d_model, dtype), "dec_ln_beta": np.zeros(d_model, dtype),
                        "W_out": (rng.standard_normal((d_model, tgt_vocab)) / math.sqrt(d_model)).astype(dtype),
                        "b_out": np.zeros(tgt_vocab, dtype)}

    def _check(self, name, X, vocab, max_len):
        X = np.asarray(X)
        if X.ndim != 2 or not 1 <= X.shape[1] <= max_len:
            raise ValueError(f"{name} must be (N, T) with 1 <= T <= {max_len}, got shape {X.shape}")
        if X.min() < 0 or X.max() >= vocab:
            raise ValueError(f"{name} token ids must lie in [0, {vocab}), got range [{X.min()}, {X.max()}]")
        return X

    def encode(self, src):
        """Encoder output (N, S, D), the memory mask (N, 1, 1, S) or None, and the caches."""
        src = self._check("src", src, self.params["src_emb"].shape[0], self.max_src_len)
        mask = None if self.pad_id is None else (src != self.pad_id)[:, None, None, :]
        if mask is not None and not mask.any(axis=-1).all():
            raise ValueError("a source sequence consists of padding only: each needs at least one real token")
        h = self.params["src_emb"][src] + self.params["src_pos"][:src.shape[1]]
        caches = []
        for layer in range(self.num_layers):
            h, cache = transformer_block_forward(h, {k: self.params[f"enc{layer}.{k}"] for k in BLOCK_PARAMS},
                                                 self.num_heads, mask)
            caches.append(cache)
        memory, ln_cache = layernorm_forward(h, self.params["enc_ln_gamma"], self.params["enc_ln_beta"])
        return memory, mask, (src, caches, ln_cache)

    def decode(self, tgt_in, memory, memory_mask):
        """Logits (N, T, tgt_vocab) for decoder inputs tgt_in (N, T) given the encoder's memory, and the caches."""
        tgt_in = self._check("tgt_in", tgt_in, self.params["tgt_emb"].shape[0], self.max_tgt_len)
        N, T = tgt_in.shape
        h = self.params["tgt_emb"][tgt_in] + self.params["tgt_pos"][:T]
        caches = []
        for layer in range(self.num_layers):
            block = {k: self.params[f"dec{layer}.{k}"] for k in DECODER_BLOCK_PARAMS}
            h, cache = transformer_decoder_block_forward(h, memory, block, self.num_heads, memory_mask)
            caches.append(cache)
        a, ln_cache = layernorm_forward(h, self.params["dec_ln_gamma"], self.params["dec_ln_beta"])
        logits, out_cache = affine_forward(a.reshape(N * T, -1), self.params["W_out"], self.params["b_out"])
        return logits.reshape(N, T, -1), (tgt_in, caches, ln_cache, out_cache)

    def forward(self, src, tgt_in):
        memory, mask, enc_cache = self.encode(src)
        logits, dec_cache = self.decode(tgt_in, memory, mask)
        return logits, (enc_cache, dec_cache)

    def backward(self, dlogits, cache):
        """Gradients of every parameter, given dlogits = dL/dlogits (N, T, tgt_vocab)."""
        (src, enc_caches, enc_ln_cache), (tgt_in, dec_caches, dec_ln_cache, out_cache) = cache
        N, T, V = dlogits.shape
        grads = {}
        da, grads["W_out"], grads["b_out"] = affine_backward(dlogits.reshape(N * T, V), out_cache)
        dh, grads["dec_ln_gamma"], grads["dec_ln_beta"] = layernorm_backward(da.reshape(N, T, -1), dec_ln_cache)
        dmemory = 0.0
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_decoder_block_backward(dh, dec_caches[layer])
            dh = block_grads.pop("x")
            dmemory = dmemory + block_grads.pop("memory")          # every decoder block reads the same memory
            grads |= {f"dec{layer}.{k}": v for k, v in block_grads.items()}
        grads["tgt_emb"] = np.zeros_like(self.params["tgt_emb"])
        np.add.at(grads["tgt_emb"], tgt_in, dh)
        grads["tgt_pos"] = np.zeros_like(self.params["tgt_pos"])
        grads["tgt_pos"][:T] = dh.sum(axis=0)
        dh, grads["enc_ln_gamma"], grads["enc_ln_beta"] = layernorm_backward(dmemory, enc_ln_cache)
        for layer in reversed(range(self.num_layers)):
            block_grads = transformer_block_backward(dh, enc_caches[layer])
            dh = block_grads.pop("x")
            grads |= {f"enc{layer}.{k}": v for k, v in block_grads.items()}
        grads["src_emb"] = np.zeros_like(self.params["src_emb"])
        np.add.at(grads["src_emb"], src, dh)
        grads["src_pos"] = np.zeros_like(self.params["src_pos"])
        grads["src_pos"][:src.shape[1]] = dh.sum(axis=0)
        return grads

    def loss(self, src, tgt_in, tgt_out):
        """Mean cross-entropy over the target positions that are not padding, and every parameter's gradient."""
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
        """Generate up to max_len tokens per source sequence, each time feeding back the most likely one.

        Returns (N, max_len) token ids (after EOS: eos_id) and the last step's cross-attention weights of the
        last decoder block, (N, h, max_len, S)."""
        max_len = self.max_tgt_len if max_len is None else int(max_len)
        if not 1 <= max_len <= self.max_tgt_len:
            raise ValueError(f"max_len must lie in [1, {self.max_tgt_len}], got {max_len}")
        memory, mask, _ = self.encode(src)
        tokens = np.full((memory.shape[0], 1), bos_id)
        for _ in range(max_len):
            logits, (_, caches, _, _) = self.decode(tokens, memory, mask)
            nxt = logits[:, -1].argmax(-1)
            nxt[tokens[:, -1] == eos_id] = eos_id                   # a finished sequence stays finished
            tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        return tokens[:, 1:], caches[-1][3][4][3]
