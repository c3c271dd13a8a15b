"""How fast is the course's from-scratch NumPy code next to PyTorch, on this machine?

    python course.py bench                     # everything (a few minutes), as below
    python benchmarks/bench.py                 # everything (a few minutes)
    python benchmarks/bench.py --skip-notebooks --skip-browser
    python benchmarks/bench.py --only conv2d epochs   # a few parts, printed, results files untouched

One process, one run. It measures
1. the machine's float32 matrix-multiply peak (NumPy and PyTorch, GFLOP/s);
2. forward + backward of each NumPy block the notebooks teach against the same
   op in PyTorch on the CPU, same shapes, float32: time, ratio NumPy/PyTorch,
   achieved GFLOP/s;
3. one training epoch of the NumPy models against their PyTorch twins;
4. every notebook executed top to bottom in the quick profile: wall time and
   the kernel's peak resident memory;
5. the browser tests (``tests/browser/test_browser.py``: JupyterLab and the Voila playground in
   Chromium): how long each step took against its speed target.
Results go to ``benchmarks/results.md`` (shown in the README) and ``results.json``.
Every block imports its chapter module; a missing or renamed function fails the run (and tests/unit/test_bench.py).

Speed is checked here, not in the correctness suite: the notebooks and the browser tests run
with ``NNDL_CHECK_SPEED=1`` (``nndl_helpers.config.speed_checks_enabled``), so their own speed
asserts, which ``make test`` leaves off, fail here and show in the report.

It measures what `python course.py lab` gives a reader: when the thread-pool and memory settings of
``nndl_helpers.config.RUNTIME_ENV`` are missing from the environment, it starts itself
again with them (``--as-is`` measures the environment as it is instead).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nndl_helpers.config import RUNTIME_ENV, SPEED_CHECKS_ENV, runtime_env_missing

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _restart_with_runtime_env() -> None:
    """Start again as `python course.py lab` would: RUNTIME_ENV must be set before NumPy and PyTorch start their pools."""
    if "--as-is" in sys.argv or not runtime_env_missing():
        return
    env = {**RUNTIME_ENV, **os.environ}
    print("restarting with", " ".join(f"{k}={env[k]}" for k in RUNTIME_ENV), flush=True)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


if __name__ == "__main__":
    _restart_with_runtime_env()

import torch  # noqa: E402  (after the restart)


def best_time(fn, repeat: int = 7, min_time: float = 0.2) -> float:
    """Median seconds per call; each measurement loops until ``min_time`` has passed."""
    fn()  # warm-up: caches, allocator, lazy imports
    samples = []
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time / repeat:
                break
        samples.append(elapsed / n)
    return float(np.median(samples))


@dataclass
class BlockResult:
    name: str
    shapes: str
    numpy_ms: float | None = None
    torch_ms: float | None = None
    gflop: float | None = None
    target_ratio: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.numpy_ms and self.torch_ms:
            return self.numpy_ms / self.torch_ms
        return None


@dataclass
class Report:
    machine: dict = field(default_factory=dict)
    peak: dict = field(default_factory=dict)
    blocks: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    notebooks: list = field(default_factory=list)
    browser: dict = field(default_factory=dict)


# ---------------------------------------------------------------- 1. machine peak


def matmul_peak(n: int = 1024) -> dict:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2 * n ** 3
    t_np = best_time(lambda: a @ b)
    t_torch = best_time(lambda: ta @ tb)
    return {"n": n, "numpy_gflops": flop / t_np / 1e9, "torch_gflops": flop / t_torch / 1e9}


# ---------------------------------------------------------------- 2. blocks


def _module(name: str):
    """A chapter module of nndl_helpers.chapters; every benchmarked chapter exists, so an import error is a bug."""
    return importlib.import_module(f"nndl_helpers.chapters.{name}")


def bench_affine(rng) -> BlockResult:
    N, D, M = 256, 784, 256
    res = BlockResult("affine (ch04a)", f"x {N}x{D}, W {D}x{M}", target_ratio=1.5)
    ch04a = _module("ch04a")
    x = rng.standard_normal((N, D), dtype=np.float32)
    W = rng.standard_normal((D, M), dtype=np.float32) * 0.05
    b = np.zeros(M, np.float32)
    dout = rng.standard_normal((N, M), dtype=np.float32)

    def numpy_step():
        out, cache = ch04a.affine_forward(x, W, b)
        ch04a.affine_backward(dout, cache)

    tx = torch.from_numpy(x).requires_grad_()
    tW = torch.from_numpy(W.T.copy()).requires_grad_()  # nn.Linear layout
    tb = torch.from_numpy(b).requires_grad_()
    tdout = torch.from_numpy(dout)

    def torch_step():
        out = torch.nn.functional.linear(tx, tW, tb)
        torch.autograd.grad(out, (tx, tW, tb), tdout)

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    res.gflop = 3 * 2 * N * D * M / 1e9
    return res


def bench_conv2d(rng) -> BlockResult:
    N, C, H, W_, F, K = 64, 6, 14, 14, 16, 5
    res = BlockResult("conv2d (ch05a)", f"x {N}x{C}x{H}x{W_}, W {F}x{C}x{K}x{K}, stride 1, pad 0",
                      target_ratio=3.0)
    ch05a = _module("ch05a")
    x = rng.standard_normal((N, C, H, W_), dtype=np.float32)
    w = rng.standard_normal((F, C, K, K), dtype=np.float32) * 0.1
    b = np.zeros(F, np.float32)
    Ho, Wo = H - K + 1, W_ - K + 1
    dout = rng.standard_normal((N, F, Ho, Wo), dtype=np.float32)

    def numpy_step():
        out, cache = ch05a.conv2d_forward(x, w, b, stride=1, padding=0)
        ch05a.conv2d_backward(dout, cache)

    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    tdout = torch.from_numpy(dout)

    def torch_step():
        out = torch.nn.functional.conv2d(tx, tw, tb)
        torch.autograd.grad(out, (tx, tw, tb), tdout)

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    res.gflop = 3 * 2 * N * F * Ho * Wo * C * K * K / 1e9
    return res


def bench_pool(rng, kind: str) -> BlockResult:
    N, C, H, W_ = 64, 6, 28, 28
    res = BlockResult(f"{kind} pool 2x2 (ch05a)", f"x {N}x{C}x{H}x{W_}", target_ratio=3.0)
    ch05a = _module("ch05a")
    fwd, bwd = getattr(ch05a, f"{kind}_pool_forward"), getattr(ch05a, f"{kind}_pool_backward")
    x = rng.standard_normal((N, C, H, W_), dtype=np.float32)
    dout = rng.standard_normal((N, C, H // 2, W_ // 2), dtype=np.float32)

    def numpy_step():
        out, cache = fwd(x, 2, 2) if _takes_positional_pool(fwd) else fwd(x)
        bwd(dout, cache)

    tx = torch.from_numpy(x).requires_grad_()
    tdout = torch.from_numpy(dout)
    tfn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d

    def torch_step():
        torch.autograd.grad(tfn(tx, 2), (tx,), tdout)

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    return res


def _takes_positional_pool(fn) -> bool:
    import inspect

    return len(inspect.signature(fn).parameters) >= 3


def bench_lstm_step(rng) -> BlockResult:
    N, D, H = 64, 128, 256
    res = BlockResult("LSTM step (ch06)", f"x {N}x{D}, hidden {H}", target_ratio=2.0)
    ch06 = _module("ch06")
    x = rng.standard_normal((N, D), dtype=np.float32)
    h, c = (rng.standard_normal((N, H), dtype=np.float32) for _ in range(2))
    Wx = rng.standard_normal((D, 4 * H), dtype=np.float32) * 0.05
    Wh = rng.standard_normal((H, 4 * H), dtype=np.float32) * 0.05
    b = np.zeros(4 * H, np.float32)
    dh, dc = (rng.standard_normal((N, H), dtype=np.float32) for _ in range(2))

    def numpy_step():
        _, _, cache = ch06.lstm_step_forward(x, h, c, Wx, Wh, b)
        ch06.lstm_step_backward(dh, dc, cache)

    cell = torch.nn.LSTMCell(D, H)
    with torch.no_grad():  # PyTorch keeps (4H, D) weights and two biases
        cell.weight_ih.copy_(torch.from_numpy(Wx.T))
        cell.weight_hh.copy_(torch.from_numpy(Wh.T))
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    tx, th, tc = (torch.from_numpy(a).requires_grad_() for a in (x, h, c))
    tdh, tdc = torch.from_numpy(dh), torch.from_numpy(dc)
    params = (tx, th, tc, *cell.parameters())

    def torch_step():
        h1, c1 = cell(tx, (th, tc))
        torch.autograd.grad((h1, c1), params, (tdh, tdc))

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    res.gflop = 3 * 2 * N * (D + H) * 4 * H / 1e9
    return res


def bench_norm(rng, kind: str) -> BlockResult:
    N, D = 256, 512
    res = BlockResult(f"{kind} (ch07b)", f"x {N}x{D}", target_ratio=None)
    ch07b = _module("ch07b")
    x = rng.standard_normal((N, D), dtype=np.float32)
    gamma, beta = np.ones(D, np.float32), np.zeros(D, np.float32)
    dout = rng.standard_normal((N, D), dtype=np.float32)
    if kind == "BatchNorm":
        state = ch07b.batchnorm_state(D, dtype=np.float32)
        fwd = lambda: ch07b.batchnorm_forward(x, gamma, beta, state, training=True)
        bwd, layer = ch07b.batchnorm_backward, torch.nn.BatchNorm1d(D)
    else:
        fwd = lambda: ch07b.layernorm_forward(x, gamma, beta)
        bwd, layer = ch07b.layernorm_backward, torch.nn.LayerNorm(D)

    def numpy_step():
        out, cache = fwd()
        bwd(dout, cache)

    tx, tdout = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dout)
    params = (tx, *layer.parameters())

    def torch_step():
        torch.autograd.grad(layer(tx), params, tdout)

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    return res


def bench_attention(rng) -> BlockResult:
    N, T, D, h = 16, 64, 128, 4
    res = BlockResult("multi-head self-attention, causal (ch08a)", f"x {N}x{T}x{D}, {h} heads, no biases",
                      target_ratio=2.0)
    ch08a = _module("ch08a")
    x = rng.standard_normal((N, T, D), dtype=np.float32)
    Ws = [(rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32) for _ in range(4)]
    dout = rng.standard_normal((N, T, D), dtype=np.float32)
    causal = np.tril(np.ones((T, T), dtype=bool))

    def numpy_step():
        out, _, cache = ch08a.multi_head_attention_forward(x, *Ws, h, mask=causal)
        ch08a.multi_head_attention_backward(dout, cache)

    # PyTorch at its best on the CPU: the same projections around its fused scaled_dot_product_attention
    tx = torch.from_numpy(x).requires_grad_()
    tWq, tWk, tWv, tWo = (torch.from_numpy(w).requires_grad_() for w in Ws)
    tdout = torch.from_numpy(dout)

    def heads(t):
        return t.view(N, T, h, D // h).transpose(1, 2)

    def torch_step():
        o = torch.nn.functional.scaled_dot_product_attention(heads(tx @ tWq), heads(tx @ tWk), heads(tx @ tWv),
                                                             is_causal=True)
        out = o.transpose(1, 2).reshape(N, T, D) @ tWo
        torch.autograd.grad(out, (tx, tWq, tWk, tWv, tWo), tdout)

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    # projections 4 * 2 N T D^2, scores and weighted sum 2 * 2 N T^2 D; backward about twice the forward
    res.gflop = 3 * (8 * N * T * D * D + 4 * N * T * T * D) / 1e9
    return res


def bench_policy_gradient(rng) -> BlockResult:
    """One REINFORCE update's gradients (policy MLP and its surrogate loss), NumPy against PyTorch autograd."""
    N, H = 2048, 64
    res = BlockResult("policy-gradient step (ch14)", f"batch {N}, policy MLP 4-{H}-2", target_ratio=1.5)
    ch14, ch14_torch = _module("ch14"), _module("ch14_torch")
    policy, _ = ch14.make_agent(H, seed=0, dtype=np.float32)
    obs = rng.standard_normal((N, 4), dtype=np.float32)
    actions = rng.integers(2, size=N)
    weights = rng.standard_normal(N).astype(np.float32)

    def numpy_step():
        ch14.reinforce_gradients(policy, obs, actions, weights)

    params = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in policy.params.items()}
    tobs, tact, tw = torch.from_numpy(obs), torch.from_numpy(actions), torch.from_numpy(weights)

    def torch_step():
        loss = ch14_torch.torch_policy_gradient_loss(ch14_torch.torch_mlp(params, tobs), tact, tw)
        torch.autograd.grad(loss, list(params.values()))

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    res.gflop = 3 * 2 * N * (4 * H + H * 2) / 1e9    # forward matmuls; backward about twice the forward
    return res


def bench_rbm_cd1(rng) -> BlockResult:
    """One CD-1 update of an RBM on a mini-batch: Gibbs step and both phases' gradients, NumPy against PyTorch."""
    N, D, H = 100, 784, 256
    res = BlockResult("RBM CD-1 step (ch12)", f"v {N}x{D}, W {D}x{H}", target_ratio=2.5)
    ch12, ch12_torch = _module("ch12"), _module("ch12_torch")
    X = (rng.random((N, D)) < 0.3).astype(np.float32)
    numpy_rbm = ch12.RBM(D, H, k=1, seed=0)
    sample_rng = np.random.default_rng(0)

    def numpy_step():
        numpy_rbm.loss(X, sample_rng)

    torch_rbm = ch12_torch.TorchRBM.from_numpy(numpy_rbm.params, k=1)
    tX = torch.from_numpy(X)

    def torch_step():
        loss = torch_rbm.loss(tX)
        torch.autograd.grad(loss, (torch_rbm.W, torch_rbm.b, torch_rbm.c))

    res.numpy_ms, res.torch_ms = 1e3 * best_time(numpy_step), 1e3 * best_time(torch_step)
    res.gflop = 4 * 2 * N * D * H / 1e9    # v->h, h->v, h of the negative sample and the gradients, roughly
    return res


# ---------------------------------------------------------------- 3. training epochs


def _epoch_pair(name, numpy_model, torch_model, X, y, batch_size, target_ratio):
    """Time one epoch of Adam mini-batch training, the same batches for both twins."""
    ch07a = _module("ch07a")
    order = np.random.default_rng(0).permutation(len(X))
    batches = [order[i:i + batch_size] for i in range(0, len(X), batch_size)]

    opt = ch07a.Adam(lr=1e-3)
    t0 = time.perf_counter()
    for b in batches:
        _, grads = numpy_model.loss(X[b], y[b])
        opt.step(numpy_model.params, grads)
    numpy_s = time.perf_counter() - t0

    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    topt = torch.optim.Adam(torch_model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    # one warm-up step so the one-time cost of torch.optim's first call is not billed to the epoch
    topt.zero_grad()
    loss_fn(torch_model(tX[batches[0]]), ty[batches[0]]).backward()
    topt.step()
    t0 = time.perf_counter()
    for b in batches:
        tb = torch.from_numpy(b)
        topt.zero_grad()
        loss_fn(torch_model(tX[tb]), ty[tb]).backward()
        topt.step()
    torch_s = time.perf_counter() - t0
    return {"model": name, "samples": len(X), "batch_size": batch_size, "numpy_s": numpy_s,
            "torch_s": torch_s, "target_ratio": target_ratio}


def bench_epochs() -> list[dict]:
    """One epoch of the NumPy MLP (ch04a) and LeNet-5 (ch05a) against identical PyTorch models."""
    import nndl_helpers as nh

    out = []
    nn = torch.nn
    ch04a, ch05a = _module("ch04a"), _module("ch05a")
    X, y = nh.load_mnist("mnist", "train", flatten=True, limit=20_000)
    sizes = [784, 256, 128, 10]
    mlp = ch04a.MLP(sizes, "relu", seed=0, dtype=np.float32)
    twin = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    out.append(_epoch_pair("MLP 784-256-128-10 (ch04a)", mlp, twin, X, y, 128, 1.5))
    Xi = X[:10_000].reshape(-1, 1, 28, 28)
    twin = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    out.append(_epoch_pair("LeNet-5 (ch05a)", ch05a.LeNet5(seed=0), twin, Xi, y[:10_000], 64, 3.0))
    return out


# ---------------------------------------------------------------- 4. notebooks


def _with_speed_checks() -> dict:
    """This process's environment, plus the switch that turns the speed asserts on."""
    return {**os.environ, SPEED_CHECKS_ENV: "1"}


def run_notebook(path: Path, timeout: int = 900) -> dict:
    """Execute a notebook as the tests do (quick profile, CPU), its speed asserts on;
    wall time and the kernel's peak RSS."""
    import nbformat
    import psutil
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    peak = {"rss": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            km = client.km
            pid = getattr(getattr(km, "provisioner", None), "pid", None) if km else None
            if pid:
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                    peak["rss"] = max(peak["rss"], rss)
                except psutil.Error:
                    pass
            stop.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    error = ""
    try:
        client.execute(env=_with_speed_checks())  # the kernel's environment
    except Exception as e:  # report, keep benchmarking the others
        if getattr(e, "ename", None):  # a cell raised: its exception says more than nbclient's wrapper
            error = f"{e.ename}: {(str(e.evalue).splitlines() or [''])[0][:160]}"
        else:
            error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    note = ""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if error and all(c.get("execution_count") for c in code) and not any(
            o.get("output_type") == "error" for c in code for o in c.get("outputs", [])):
        # every cell ran without error; nbclient then lost the kernel while shutting it down
        note, error = f"every cell ran; nbclient raised {error.strip(': ')} while shutting the kernel down", ""
    return {"notebook": path.name, "wall_s": wall, "peak_rss_mib": peak["rss"] / 2 ** 20, "error": error,
            "note": note}


def notebook_budget(name: str) -> int:
    return 90 if name[:2] in ("02", "03") else 120


# ---------------------------------------------------------------- 5. browser tests


def run_browser_tests(timeout: int = 3600) -> dict:
    """Run tests/browser/test_browser.py with its speed targets asserted; each timing against its target.

    The tests record their timings, targets and missed targets in artifacts/browser/timings.json;
    without Chromium or Playwright they skip, and the report says why.
    """
    artifacts = REPO / "artifacts" / "browser"
    timings = artifacts / "timings.json"
    timings.unlink(missing_ok=True)  # this run's timings only
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "ui", "tests/browser/test_browser.py"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=_with_speed_checks(), capture_output=True, text=True,
                              timeout=timeout)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:  # its output may come back as bytes even with text=True
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        output, code = f"{partial}\nstopped after {timeout} s", None
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else "no output"
    skipped = next((line.split("BROWSER TEST NOT RUN:", 1)[1].strip() for line in lines
                    if "BROWSER TEST NOT RUN:" in line), "")
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return {"command": " ".join(["python", *cmd[1:]]), "returncode": code, "summary": summary, "skipped": skipped,
            "failures": failures, "tests": json.loads(timings.read_text()) if timings.exists() else {}}


# ---------------------------------------------------------------- report


def to_markdown(rep: Report) -> str:
    m, p = rep.machine, rep.peak
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), NumPy {m['numpy']}, "
        f"PyTorch {m['torch']}, {m['threads']} threads; "
        + ", ".join(f"{k}={v}" for k, v in m.get("environment", {}).items()) + ".",
        "",
        f"Matrix-multiply peak (float32, {p['n']}×{p['n']}): NumPy {p['numpy_gflops']:.1f} GFLOP/s, "
        f"PyTorch {p['torch_gflops']:.1f} GFLOP/s.",
        "",
        "| block (forward + backward, float32) | shapes | NumPy ms | PyTorch ms | NumPy / PyTorch | target | NumPy GFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in rep.blocks:
        if b.numpy_ms is None:
            lines.append(f"| {b.name} | {b.shapes} | – | – | – | {_fmt_target(b.target_ratio)} | {b.note} |")
            continue
        gf = f"{b.gflop / (b.numpy_ms / 1e3):.1f}" if b.gflop else "–"
        ok = "✓" if b.target_ratio is None or b.ratio <= b.target_ratio else "✗"
        lines.append(f"| {b.name} | {b.shapes} | {b.numpy_ms:.2f} | {b.torch_ms:.2f} | {b.ratio:.2f} {ok} | "
                     f"{_fmt_target(b.target_ratio)} | {gf} |")
    if rep.epochs:
        lines += ["", "| one training epoch | samples | NumPy s | PyTorch (CPU) s | ratio | target |", "|---|---|---|---|---|---|"]
        for e in rep.epochs:
            if "numpy_s" not in e:
                lines.append(f"| {e['model']} | – | – | – | – | {e.get('note', '')} |")
            else:
                r = e["numpy_s"] / e["torch_s"]
                tgt = e.get("target_ratio")
                ok = "" if tgt is None else (" ✓" if r <= tgt else " ✗")
                lines.append(f"| {e['model']} | {e['samples']} | {e['numpy_s']:.2f} | {e['torch_s']:.2f} | "
                             f"{r:.2f}{ok} | {_fmt_target(tgt)} |")
    if rep.notebooks:
        lines += ["", "| notebook (quick profile, one at a time, speed asserts on) | wall s | budget s "
                      "| peak RSS MiB |", "|---|---|---|---|"]
        for n in rep.notebooks:
            flag = "✓" if n["wall_s"] <= notebook_budget(n["notebook"]) and not n["error"] else "✗"
            err = f" ({n['error']})" if n["error"] else ""
            err += f" ({n['note']})" if n.get("note") else ""
            lines.append(f"| {n['notebook']}{err} | {n['wall_s']:.1f} {flag} | {notebook_budget(n['notebook'])} | "
                         f"{n['peak_rss_mib']:.0f} |")
    if rep.browser:
        lines += ["", _browser_markdown(rep.browser)]
    return "\n".join(lines) + "\n"


def _browser_markdown(browser: dict) -> str:
    """One row per timing that has a speed target, then what pytest said."""
    rows = []
    for name, entry in sorted(browser["tests"].items()):
        missed = {m.split(" = ", 1)[0] for m in entry.get("missed", [])}
        for key, target in entry.get("targets", {}).items():
            if key not in entry:
                continue  # the test stopped before this step
            ok = "✗" if key in missed else "✓"
            pretty = target.replace("<=", "≤").replace(">=", "≥")
            rows.append(f"| {name} | {key} | {entry[key]:.2f} {ok} | {pretty} |")
    lines = ["| browser test (speed asserts on) | timing | measured | target |", "|---|---|---|---|", *rows, ""]
    note = f"`{browser['command']}`: {browser['summary']}"
    if browser.get("skipped"):
        note += f" (not run: {browser['skipped']})"
    for failure in browser.get("failures", []):
        note += f"; {failure}"
    return "\n".join((lines if rows else []) + [note])


def _fmt_target(t):
    return f"≤ {t:g}" if t else "–"


BLOCKS = {
    "affine": bench_affine,
    "conv2d": bench_conv2d,
    "maxpool": lambda rng: bench_pool(rng, "max"),
    "avgpool": lambda rng: bench_pool(rng, "avg"),
    "lstm": bench_lstm_step,
    "batchnorm": lambda rng: bench_norm(rng, "BatchNorm"),
    "layernorm": lambda rng: bench_norm(rng, "LayerNorm"),
    "attention": bench_attention,
    "policy_gradient": bench_policy_gradient,
    "rbm_cd1": bench_rbm_cd1,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-notebooks", action="store_true")
    ap.add_argument("--skip-browser", action="store_true", help="do not run the browser tests")
    parts = [*BLOCKS, "epochs", "notebooks", "browser"]
    ap.add_argument("--only", nargs="+", choices=parts, metavar="PART",
                    help=f"measure only these parts and print them without writing results files: "
                         f"{', '.join(parts)}")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--as-is", action="store_true",
                    help="do not add the RUNTIME_ENV settings that `python course.py lab` sets (compare with and without)")
    args = ap.parse_args(argv)

    os.environ.setdefault("NNDL_PROFILE", "quick")
    os.environ.setdefault("NNDL_DEVICE", "cpu")
    rng = np.random.default_rng(0)
    rep = Report()
    rep.machine = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "environment": {k: os.environ.get(k, "(unset)") for k in RUNTIME_ENV},
    }
    try:
        with open("/proc/cpuinfo") as fh:
            rep.machine["cpu"] = next(l.split(":", 1)[1].strip() for l in fh if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print("matmul peak ...", flush=True)
    rep.peak = matmul_peak()
    print(rep.peak, flush=True)
    wanted = set(args.only or [*BLOCKS, "epochs"] + ([] if args.skip_notebooks else ["notebooks"])
                 + ([] if args.skip_browser else ["browser"]))
    for key, fn in BLOCKS.items():
        if key in wanted:
            b = fn(rng)
            print(b.name, b.numpy_ms, b.torch_ms, b.note, flush=True)
            rep.blocks.append(b)
    if "epochs" in wanted:
        rep.epochs = bench_epochs()
        print(rep.epochs, flush=True)
    if "notebooks" in wanted:
        for path in sorted((REPO / "notebooks").glob("*.ipynb")):
            print("running", path.name, "...", flush=True)
            result = run_notebook(path, timeout=240)
            if "Timeout" in result["error"]:
                # nbclient sometimes never sees a cell finish after widget callbacks
                # (jupyter/nbclient#312); a second run measures the notebook, not the stall
                print("stalled, running it again:", result, flush=True)
                result = run_notebook(path, timeout=240)
                result["note"] = ("second attempt (the first stalled in nbclient); " + result["note"]).strip("; ")
            rep.notebooks.append(result)
            print(rep.notebooks[-1], flush=True)
    if "browser" in wanted:
        print("browser tests ...", flush=True)
        rep.browser = run_browser_tests()
        print(rep.browser["summary"], flush=True)
    if args.only:
        print(to_markdown(rep))
        return 0

    out = Path(args.out)
    md = to_markdown(rep)
    (out / "results.md").write_text(md, encoding="utf-8")
    data = asdict(rep)
    for b, raw in zip(rep.blocks, data["blocks"]):
        raw["ratio"] = b.ratio
    (out / "results.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
