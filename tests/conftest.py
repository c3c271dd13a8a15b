"""Test-wide settings.

Under ``pytest -n 2`` two notebook kernels share the machine's cores; one BLAS /
OpenMP thread each keeps them from oversubscribing the CPU (and the kernels,
started by nbval from this process, inherit the setting).
"""
import os

import matplotlib

matplotlib.use("Agg")

if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
