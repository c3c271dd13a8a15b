"""benchmarks/gpu_course.py, the runner of the course in the full profile on a GPU, works without one:
it runs a notebook in a fresh process, stops at the deadline, and collects times, logs, figures and metrics."""
import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_course.py"


def run_course(tmp_path, *args):
    env = dict(os.environ, NNDL_DATA_MIRROR=os.environ.get("NNDL_DATA_MIRROR", str(ROOT.parent / "shared" / "data")))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(SCRIPT), "course", "--out", str(out), "--slots", "1", "--threads", "1",
                           *args], capture_output=True, text=True, env=env, timeout=300)
    return proc, out, json.loads((out / "course.json").read_text())


def test_a_notebook_runs_and_leaves_its_time_log_figures_and_metrics(tmp_path):
    proc, out, report = run_course(tmp_path, "--profile", "quick", "04b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = report["notebooks"]["04b_automatic_differentiation"]
    assert run["status"] == "ok" and run["wall_s"] > 0 and run["last"].startswith("### done"), run
    assert report["profile"] == "quick" and "torch" in report["machine"]
    metrics = json.loads((out / "metrics" / "04b_automatic_differentiation.json").read_text())
    assert metrics["profile"] == "quick" and metrics["metrics"]
    assert list((out / "figures" / "04b_automatic_differentiation").glob("*.png"))
    assert "all checks passed" in (out / "logs" / "04b_automatic_differentiation.log").read_text()


def test_the_deadline_stops_a_notebook_and_says_where(tmp_path):
    proc, out, report = run_course(tmp_path, "--profile", "quick", "--deadline", "3", "06", "08a")
    assert proc.returncode == 1
    assert report["notebooks"]["06_recurrent_networks"]["status"] == "stopped at the deadline"
    assert report["notebooks"]["08a_attention"]["status"] == "not started (deadline)"
