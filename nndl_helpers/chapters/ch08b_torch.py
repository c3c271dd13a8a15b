"""PyTorch code taught in notebooks/08b_transformer.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from nndl_helpers.chapters.ch08a_torch import TransformerBlock


class TinyGPT(nn.Module):
    """Decoder-only Transformer language model: embeddings, causal pre-LN blocks, LayerNorm, linear head.

    forward(idx (N, T) int64) -> logits (N, T, vocab_size); T must not exceed `context`.
    """

    def __init__(self, vocab_size, context, d_model, num_heads, num_layers, dropout=0.0):
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        # PyTorch's default initialisation: for models this small it trains faster than GPT-2's N(0, 0.02)

    def forward(self, idx):
        N, T = idx.shape
        if T > self.context:
            raise ValueError(f"sequence of length {T} is longer than the model's context of {self.context} "
                             f"tokens; crop it to the last {self.context}")
        h = self.drop(self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            h = block(h, causal=True)
        return self.head(self.ln_f(h))


@torch.no_grad()
def generate_text(model, vocab, prompt, num_chars=200, temperature=1.0, top_k=None, seed=0):
    """Continue `prompt` by num_chars characters sampled from the model.

    temperature 0 = greedy; top_k keeps only the k most likely characters. A prompt longer than the
    model's context is cropped to its last `context` characters (the model cannot see further back).
    Raises ValueError for an empty prompt, characters outside the vocabulary (named), a negative
    temperature or top_k < 1.
    """
    if not isinstance(prompt, str) or len(prompt) == 0:
        raise ValueError("the prompt is empty: give at least one character to start from")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no limit), got {top_k}")
    ids = vocab.encode(prompt, strict=True)               # ValueError naming unknown characters
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.tensor([ids], device=device)
    was_training = model.training
    model.eval()
    out = []
    for _ in range(int(num_chars)):
        logits = model(idx[:, -model.context:])[0, -1].float().cpu()
        logits[0] = -float("inf")                        # never emit <unk>
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                logits[logits < torch.topk(logits, top_k).values[-1]] = -float("inf")
            nxt = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=g))
        out.append(nxt)
        idx = torch.cat([idx, torch.tensor([[nxt]], device=device)], dim=1)
    model.train(was_training)
    return prompt + vocab.decode(out)
