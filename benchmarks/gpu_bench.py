"""What the GPU habits of the course buy on a CUDA machine: a training step timed before and after.

    python benchmarks/gpu_bench.py --out gpu_bench.json [--budget 90]

For three of the course's models, at their full-profile sizes, one training step (forward, loss,
backward, Adam) is timed with CUDA events (mean of the timed steps after warm-up steps):

- the U-Net of 13c (batch 128, widths 32-64-128): float32; bfloat16 autocast; autocast plus
  channels-last memory; plus ``torch.compile`` (whose first step, the compilation, is reported apart);
- the tiny GPT of 08b (nanoGPT's baby GPT: 6 layers, 6 heads, D=384, 64 x 256 tokens): float32,
  bfloat16 autocast, plus ``torch.compile``;
- LeNet-5 of 05 (batch 256): float32, autocast, autocast plus channels-last;

and feeding one MNIST-sized batch (256 x 784 float32) to a small MLP step: copied from a NumPy
array each step, from pinned memory with ``non_blocking=True``, or indexed from a tensor kept on
the GPU. Cases are skipped once the time budget is spent (the file says which).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed_steps(step, warmup=5, steps=30):
    """Mean milliseconds of ``step()`` after ``warmup`` calls, and the first call's seconds.

    On CUDA the steps are timed with CUDA events; elsewhere (a check of this script on a CPU)
    with the wall clock.
    """
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    step()
    sync()
    first_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    sync()
    if not cuda:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - t0) * 1e3 / steps, first_s
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    sync()
    return start.elapsed_time(end) / steps, first_s


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_step(model, batch, loss_fn, amp):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def unet_cases(device):
    from nndl_helpers.chapters.ch13c_torch import TinyUNet

    x = torch.randn(128, 1, 28, 28, device=device)
    t = torch.randint(0, 1001, (128,), device=device)

    def loss_fn(model, batch):
        return F.mse_loss(model(batch[0], batch[1]).float(), batch[0])

    def build(amp, channels_last, compiled):
        torch.manual_seed(0)
        model = TinyUNet((32, 64, 128), T=1000).to(device)
        xb = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xb = x.contiguous(memory_format=torch.channels_last)
        if compiled:
            model = torch.compile(model)
        return make_step(model, (xb, t), loss_fn, amp)

    return "unet_13c_b128", [("fp32", lambda: build(False, False, False)),
                             ("bf16", lambda: build(True, False, False)),
                             ("bf16_channels_last", lambda: build(True, True, False)),
                             ("bf16_channels_last_compile", lambda: build(True, True, True))]


def gpt_cases(device):
    from nndl_helpers.chapters.ch08b_torch import TinyGPT

    idx = torch.randint(0, 65, (64, 257), device=device)

    def loss_fn(model, batch):
        logits = model(batch[:, :-1])
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    def build(amp, compiled):
        torch.manual_seed(0)
        model = TinyGPT(65, 256, 384, 6, 6, dropout=0.2).to(device)
        if compiled:
            model = torch.compile(model)
        return make_step(model, idx, loss_fn, amp)

    return "gpt_08b_64x256", [("fp32", lambda: build(False, False)), ("bf16", lambda: build(True, False)),
                              ("bf16_compile", lambda: build(True, True))]


def lenet_cases(device):
    from nndl_helpers.chapters.ch05a_torch import lenet5_torch

    x = torch.randn(256, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (256,), device=device)

    def loss_fn(model, batch):
        return F.cross_entropy(model(batch[0]).float(), batch[1])

    def build(amp, channels_last):
        torch.manual_seed(0)
        model = lenet5_torch().to(device)
        xb = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xb = x.contiguous(memory_format=torch.channels_last)
        return make_step(model, (xb, y), loss_fn, amp)

    return "lenet5_b256", [("fp32", lambda: build(False, False)), ("bf16", lambda: build(True, False)),
                           ("bf16_channels_last", lambda: build(True, True))]


def feeding_cases(device):
    X = np.random.default_rng(0).random((60_000, 784), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 10, 60_000)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(2).permutation(60_000)
    state = {"i": 0}

    def train(xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def next_index():
        i = state["i"]
        state["i"] = (i + 256) % (60_000 - 256)
        return order[i:i + 256]

    def from_numpy():
        def step():
            ix = next_index()
            train(torch.from_numpy(X[ix]).to(device), torch.from_numpy(y[ix]).to(device))
        return step

    def pinned():
        def step():
            ix = next_index()
            pin = device.type == "cuda"
            xb, yb = torch.from_numpy(X[ix]), torch.from_numpy(y[ix])
            xb, yb = (xb.pin_memory(), yb.pin_memory()) if pin else (xb, yb)
            train(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
        return step

    def resident():
        Xd, yd, od = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device), torch.from_numpy(order).to(device)

        def step():
            i = state["i"]
            state["i"] = (i + 256) % (60_000 - 256)
            ix = od[i:i + 256]
            train(Xd[ix], yd[ix])
        return step

    return "mlp_feeding_b256", [("numpy_copy_each_step", from_numpy), ("pinned_non_blocking", pinned),
                                ("resident_on_gpu", resident)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds; later cases are skipped")
    parser.add_argument("--only", nargs="*", default=None, help="lenet, feeding, unet, gpt")
    args = parser.parse_args(argv)
    table = {"lenet": lenet_cases, "feeding": feeding_cases, "unet": unet_cases, "gpt": gpt_cases}
    args.cases = [table[k] for k in args.only] if args.only else None
    device = DEVICE
    results = {"gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else "none (cpu)", "torch": torch.__version__, "cases": {}, "skipped": []}
    start = time.perf_counter()
    for factory in args.cases or (lenet_cases, feeding_cases, unet_cases, gpt_cases):
        name, variants = factory(device)
        results["cases"][name] = {}
        for label, build in variants:
            if time.perf_counter() - start > args.budget:
                results["skipped"].append(f"{name}/{label}")
                continue
            try:
                ms, first_s = timed_steps(build())
                results["cases"][name][label] = {"ms_per_step": round(ms, 3), "first_step_s": round(first_s, 2)}
            except Exception as exc:  # noqa: BLE001 - one failing variant must not hide the others
                results["cases"][name][label] = {"error": repr(exc)[:300]}
            print(name, label, results["cases"][name][label], flush=True)
            args.out.write_text(json.dumps(results, indent=1))
            torch.cuda.empty_cache()
    results["bench_s"] = round(time.perf_counter() - start, 1)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
