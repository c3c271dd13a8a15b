"""Run the whole course in the full profile on a GPU machine and collect what it measured.

    python benchmarks/gpu_course.py course --out DIR [--slots 5] [--deadline 420] [NOTEBOOK ...]
    python benchmarks/gpu_course.py exec notebooks/05a_convolution.ipynb --figures DIR

``course`` runs the notebooks (default: all of them, longest first) a few at a time, each in a
fresh Python process with ``NNDL_PROFILE=full``, its share of the CPU threads for the NumPy parts,
and its metric file written to ``DIR/metrics``. It stops any notebook still running at the
deadline. ``DIR/course.json`` holds the machine (GPU, driver, CUDA, PyTorch), each notebook's wall
time, exit status and the cell it stopped in; ``DIR/logs/<stem>.log`` each notebook's printed
output, cell by cell; ``DIR/figures/<stem>/`` its figures as small PNGs; ``DIR/gpu.csv`` the GPU's
load and memory every 2 s.

``exec`` is the runner of one notebook: its code cells run in order in an IPython shell in this
process (the same shell a Jupyter kernel wraps, so magics and ``display`` work), stopping at the
first error. It needs IPython and ipywidgets, but no Jupyter server or kernel, so it works on a
machine where only PyTorch and a few wheels are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# longest first, so the short notebooks fill the slots at the end
ORDER = ["13c", "15b", "16b", "08b", "06", "05b", "05a", "13b", "09", "13a", "07b", "04a", "03", "07a", "02",
         "04b", "08a", "15a", "16c", "16a", "10b", "16d", "playground"]


def notebooks(selected: list[str]) -> list[Path]:
    found = {p.stem.split("_")[0] if p.stem[0].isdigit() else p.stem: p
             for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    keys = selected or [k for k in ORDER if k in found] + [k for k in found if k not in ORDER]
    return [found[k] for k in keys]


# ---------------------------------------------------------------- one notebook, in this process
def exec_notebook(path: Path, figures: Path | None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    nb = nbformat.read(path, as_version=4)
    shell = InteractiveShell.instance()
    saved = {"n": 0, "cell": 0}

    def save_open_figures(*_args, **_kwargs):
        for num in plt.get_fignums():
            fig = plt.figure(num)
            if figures is not None:
                figures.mkdir(parents=True, exist_ok=True)
                saved["n"] += 1
                fig.savefig(figures / f"cell{saved['cell']:03d}_{saved['n']:03d}.png", dpi=55)
            plt.close(fig)

    plt.show = save_open_figures          # what the inline backend does at show(): draw, then close
    os.chdir(path.parent)                 # a notebook runs from its own folder, as in Jupyter
    start = time.perf_counter()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        saved["cell"] = index
        t0 = time.perf_counter()
        print(f"\n### cell {index} start {t0 - start:.1f} s", flush=True)
        result = shell.run_cell(cell.source, store_history=True)
        save_open_figures()
        sys.stdout.flush()
        print(f"### cell {index} took {time.perf_counter() - t0:.2f} s", flush=True)
        if not result.success:
            print(f"### FAILED in cell {index}", flush=True)
            return 1
    print(f"### done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


# ---------------------------------------------------------------- the course, a few at a time
def machine_info() -> dict:
    info = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_runtime"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except Exception as exc:  # noqa: BLE001 - report, do not fail the run
        info["torch_error"] = repr(exc)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        info["nvidia_smi"] = out
    except Exception as exc:  # noqa: BLE001
        info["nvidia_smi"] = repr(exc)
    return info


def last_cell(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("### ")]
    return lines[-1] if lines else ""


def course(out: Path, slots: int, deadline: float, threads: int, selected: list[str], profile: str = "full") -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    report = {"machine": machine_info(), "profile": profile, "slots": slots, "threads_per_notebook": threads,
              "deadline_s": deadline, "notebooks": {}}
    print(json.dumps(report["machine"]), flush=True)
    smi = None
    try:
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used",
                                "--format=csv,noheader", "-l", "2"],
                               stdout=open(out / "gpu.csv", "w"), stderr=subprocess.DEVNULL)
    except OSError:
        pass
    env = dict(os.environ, NNDL_PROFILE=profile, NNDL_METRICS_DIR=str(out / "metrics"),
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="PASSIVE", OPENBLAS_THREAD_TIMEOUT="4",
               MALLOC_MMAP_THRESHOLD_="33554432", MALLOC_TRIM_THRESHOLD_="67108864",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    queue = notebooks(selected)
    running: dict[str, tuple[subprocess.Popen, float, Path]] = {}
    start = time.perf_counter()
    while queue or running:
        now = time.perf_counter()
        while queue and len(running) < slots and now - start < deadline:
            path = queue.pop(0)
            log = out / "logs" / f"{path.stem}.log"
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "exec", str(path),
                 "--figures", str(out / "figures" / path.stem)],
                stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
            running[path.stem] = (proc, now, log)
            print(f"{now - start:6.1f} s  start {path.stem}", flush=True)
        for stem, (proc, t0, log) in list(running.items()):
            rc = proc.poll()
            over = time.perf_counter() - start >= deadline
            if rc is None and not over:
                continue
            if rc is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status = "stopped at the deadline"
            else:
                status = "ok" if rc == 0 else f"failed (exit {rc})"
            wall = time.perf_counter() - t0
            report["notebooks"][stem] = {"status": status, "wall_s": round(wall, 1),
                                         "started_at_s": round(t0 - start, 1), "last": last_cell(log)}
            del running[stem]
            print(f"{time.perf_counter() - start:6.1f} s  {stem}: {status} after {wall:.1f} s  {last_cell(log)}",
                  flush=True)
        if queue and time.perf_counter() - start >= deadline:
            for path in queue:
                report["notebooks"][path.stem] = {"status": "not started (deadline)"}
            queue = []
        (out / "course.json").write_text(json.dumps(report, indent=1))
        time.sleep(0.5)
    report["course_wall_s"] = round(time.perf_counter() - start, 1)
    (out / "course.json").write_text(json.dumps(report, indent=1))
    if smi is not None:
        smi.terminate()
    print(f"course: {report['course_wall_s']} s", flush=True)
    return 0 if all(v["status"] == "ok" for v in report["notebooks"].values()) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("exec", help="run one notebook's cells in this process")
    one.add_argument("notebook", type=Path)
    one.add_argument("--figures", type=Path, default=None)
    many = sub.add_parser("course", help="run the course, a few notebooks at a time")
    many.add_argument("notebooks", nargs="*", help="prefixes such as 05a (default: all)")
    many.add_argument("--out", type=Path, required=True)
    many.add_argument("--slots", type=int, default=5)
    many.add_argument("--threads", type=int, default=3, help="CPU threads per notebook")
    many.add_argument("--profile", default="full", choices=("quick", "full"))
    many.add_argument("--deadline", type=float, default=420.0, help="seconds before running notebooks are stopped")
    args = parser.parse_args(argv)
    if args.command == "exec":
        return exec_notebook(args.notebook.resolve(), args.figures.resolve() if args.figures else None)
    return course(args.out.resolve(), args.slots, args.deadline, args.threads, args.notebooks, args.profile)


if __name__ == "__main__":
    sys.exit(main())
