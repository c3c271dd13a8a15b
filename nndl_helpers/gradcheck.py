"""Gradient checking: centred differences, CS231n's relative error, and autograd parity.

The centred-difference checker is notebook 04b's code (nndl_helpers.chapters.ch04b), called from here.

    num = numerical_gradient(lambda: loss(W), W)     # perturbs W in place
    rel_error(num, dW)                               # ~1e-9 or smaller is good in float64
    compare_with_autograd({"W": dW}, torch_loss, {"X": X, "W": W})
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

DEFAULT_TOL = 1e-6


def rel_error(a, b) -> float:
    """max |a - b| / max(1e-8, |a| + |b|), elementwise maximum (CS231n)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


# The centred-difference checker is taught in notebook 04b (§4.5.1, numerical differentiation) and lives
# in its generated module, nndl_helpers.chapters.ch04b. The two functions below only call that code. They
# import it on their first call, not when nndl_helpers is imported: a generated module that an export
# broke can then never break `import nndl_helpers` or `python -m nndl_helpers.nbtools`, which repairs it.

def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centred-difference gradient of the scalar ``f()`` with respect to the float64 array ``x``.

    The code is notebook 04b's ``numerical_gradient`` (``nndl_helpers.chapters.ch04b``, where its
    error analysis is written out): ``x`` is perturbed in place, one entry at a time, and restored,
    so ``f`` must read ``x`` (a closure); float32 raises TypeError.
    """
    from nndl_helpers.chapters.ch04b import numerical_gradient as taught

    return taught(f, x, h)


def numerical_gradient_array(f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray,
                             h: float = 1e-5) -> np.ndarray:
    """Centred-difference gradient of ``sum(f() * dout)``: checks a layer's backward for any upstream ``dout``.

    The code is notebook 04b's ``numerical_gradient_array`` (``nndl_helpers.chapters.ch04b``).
    """
    from nndl_helpers.chapters.ch04b import numerical_gradient_array as taught

    return taught(f, x, dout, h)


def autograd_gradients(torch_fn: Callable, inputs: Mapping[str, np.ndarray],
                       wrt: list[str] | None = None, dout: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients by ``torch.autograd`` of ``torch_fn(**tensors)`` (float64, CPU).

    The output is reduced as ``sum(out * dout)`` when ``dout`` is given (a
    layer's backward), otherwise it must be a scalar (a loss). ``wrt`` names
    the inputs to differentiate; by default every floating-point input.
    """
    import torch

    tensors = {}
    for name, value in inputs.items():
        t = torch.as_tensor(np.asarray(value))
        if t.is_floating_point():
            t = t.double()
        tensors[name] = t
    wrt = wrt if wrt is not None else [k for k, t in tensors.items() if t.is_floating_point()]
    for k in wrt:
        tensors[k].requires_grad_(True)
    out = torch_fn(**tensors)
    if dout is not None:
        out = (out * torch.as_tensor(dout, dtype=out.dtype)).sum()
    elif out.numel() != 1:
        raise ValueError(f"torch_fn returned shape {tuple(out.shape)}; pass dout for non-scalar outputs")
    grads = torch.autograd.grad(out, [tensors[k] for k in wrt], allow_unused=True)
    return {k: (np.zeros(tensors[k].shape) if g is None else g.detach().numpy()) for k, g in zip(wrt, grads)}


def compare_with_autograd(numpy_grads: Mapping[str, np.ndarray], torch_fn: Callable,
                          inputs: Mapping[str, np.ndarray], *, dout: np.ndarray | None = None,
                          label: str = "", tol: float = DEFAULT_TOL, verbose: bool = True) -> float:
    """Compare hand-written gradients with ``torch.autograd`` on the same inputs.

    Prints one verdict line, e.g. ``softmax CE   dW db   OK (< 1e-06)``, and returns the
    largest relative error (print or plot that number where its size is the lesson).
    """
    ref = autograd_gradients(torch_fn, inputs, wrt=list(numpy_grads), dout=dout)
    errors = {k: rel_error(numpy_grads[k], ref[k]) for k in numpy_grads}
    worst = max(errors.values()) if errors else 0.0
    if verbose:
        print(verdict_line(label, errors, tol))
    return worst


def verdict_line(label: str, errors: Mapping[str, float], tol: float = DEFAULT_TOL) -> str:
    """One line that states whether every relative error is below ``tol``.

    ``label  dx dW db   OK (< 1e-06)`` when they all are; otherwise the failing
    gradients with their errors, ``label  dx dW db   FAIL: dW 3.2e-04 (tol 1e-06)``.

    A passing line never shows the error itself. Its last digits, even its power of
    ten, change with the CPU, the BLAS kernel and the thread count (a centred
    difference of 4e-8 on one machine is 1.1e-7 on another), so a line printed in a
    checked notebook cell must depend only on the verdict against the tolerance the
    course claims.
    """
    if not errors:
        raise ValueError(f"verdict_line({label!r}): no errors to judge")
    names = " ".join(f"d{k}" for k in errors)
    failing = {k: v for k, v in errors.items() if not v < tol}  # NaN fails too
    if failing:
        detail = ", ".join(f"d{k} {v:.1e}" for k, v in failing.items())
        verdict = f"FAIL: {detail} (tol {tol:.0e})"
    else:
        verdict = f"OK (< {tol:.0e})"
    return f"{label:<24s} {names}   {verdict}".strip()


def check_gradients(label: str, forward: Callable[[], np.ndarray], grads: Mapping[str, np.ndarray],
                    inputs: Mapping[str, np.ndarray], torch_fn: Callable, dout: np.ndarray,
                    centred_tol: float = 1e-5, tol: float = DEFAULT_TOL) -> tuple[float, float]:
    """Both checks of a hand-written backward, each printed as one verdict line.

    ``grads[k]`` claims to be the gradient of ``sum(forward() * dout)`` with respect to
    ``inputs[k]``. It is compared with centred differences (``numerical_gradient_array``, which
    perturbs ``inputs[k]`` in place; tolerance ``centred_tol``) and with ``torch.autograd`` on
    ``torch_fn`` (see ``compare_with_autograd``; tolerance ``tol``).
    Returns (worst centred-difference error, worst autograd error).
    """
    errors = {k: rel_error(numerical_gradient_array(forward, inputs[k], dout), grads[k]) for k in grads}
    print(verdict_line(f"{label}, centred", errors, tol=centred_tol))
    worst_autograd = compare_with_autograd(grads, torch_fn, inputs, dout=dout, label=f"{label}, autograd", tol=tol)
    return max(errors.values()), worst_autograd
