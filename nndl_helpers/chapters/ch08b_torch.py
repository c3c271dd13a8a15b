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


import numpy as np

from nndl_helpers.config import autocast


def make_windows(ids, context):
    """Batches of random windows (X, Y = X shifted by one) from a 1-D id tensor, drawn on its device
    (g: a generator on that device), so a GPU step never waits for a copy from the host."""
    def batch(n, g):
        starts = torch.randint(len(ids) - context - 1, (n,), generator=g, device=ids.device)
        rows = ids[starts[:, None] + torch.arange(context + 1, device=ids.device)]
        return rows[:, :-1], rows[:, 1:]
    return batch


@torch.no_grad()
def evaluate(model, ids, context, num_windows=256, batch_size=64):
    """Mean cross-entropy (nats / token) on evenly spaced windows covering `ids` (deterministic)."""
    model.eval()
    starts = np.linspace(0, len(ids) - context - 1, num_windows).astype(np.int64)
    total = 0.0
    for k in range(0, num_windows, batch_size):
        offsets = torch.as_tensor(starts[k:k + batch_size])[:, None] + torch.arange(context + 1)
        rows = ids[offsets.to(ids.device)]
        with autocast(ids.device):
            logits = model(rows[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(), reduction="sum").item()
    model.train()
    return total / (num_windows * context)


import math
import time

from tqdm.auto import tqdm

from nndl_helpers.config import grad_scaler
from nndl_helpers.plot import LiveCurve


def train_gpt(model, train_ids, val_ids, steps, lr, batch_size, warmup, title, eval_every=100):
    """AdamW with linear warm-up and cosine decay to lr/10; returns (train losses, [(step, val loss)], seconds).

    Trains on the device of `train_ids` (1-D id tensors, like `val_ids`); a live curve titled `title` is drawn
    in a notebook (outside one it only records), the validation loss measured every `eval_every` steps.
    """
    device = train_ids.device
    model.to(device).train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99), fused=device.type == "cuda")
    scaler = grad_scaler(device)          # loss scaling for float16 autocast (older GPUs); else a pass-through
    schedule = lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    batch = make_windows(train_ids, model.context)
    g = torch.Generator(device=train_ids.device).manual_seed(0)
    curve = LiveCurve(["train loss", "val loss"], xlabel="step", title=title, min_interval=5.0)
    losses, val_curve, pending = [], [], []
    t0 = time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc=title):
        X, Y = batch(batch_size, g)
        with autocast(device):                   # bfloat16 on a recent GPU, float32 on a CPU
            loss = F.cross_entropy(model(X).float().flatten(0, 1), Y.flatten())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)                     # clip the true gradients
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        pending.append(loss.detach())            # read back every eval_every steps, not once a step
        if step % eval_every == 0 or step == steps:
            losses += torch.stack(pending).tolist()
            pending = []
            val_curve.append((step, evaluate(model, val_ids, model.context, num_windows=64)))
            curve.update(step, **{"train loss": np.mean(losses[-eval_every:]), "val loss": val_curve[-1][1]})
    curve.close()
    return losses, val_curve, time.perf_counter() - t0
