import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers import gradcheck


def test_rel_error_is_cs231n_definition():
    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.2])
    assert nh.rel_error(a, b) == pytest.approx(0.2 / 4.2)
    assert nh.rel_error(a, a) == 0.0
    assert nh.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        nh.rel_error(np.zeros(2), np.zeros(3))


def test_numerical_gradient_of_a_known_function():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    x = rng.normal(size=4)
    num = nh.numerical_gradient(lambda: float(x @ A @ x), x)
    assert nh.rel_error(num, (A + A.T) @ x) < 1e-8
    assert np.all(np.isfinite(x))  # x restored, not left perturbed
    x_before = x.copy()
    nh.numerical_gradient(lambda: float(np.sum(x ** 3)), x)
    np.testing.assert_array_equal(x, x_before)


def _signature(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_checker_is_the_code_notebook_04b_teaches(monkeypatch):
    """nh.numerical_gradient(_array) call nndl_helpers.chapters.ch04b's functions, with every argument."""
    from nndl_helpers.chapters import ch04b

    assert nh.numerical_gradient is gradcheck.numerical_gradient
    assert nh.numerical_gradient_array is gradcheck.numerical_gradient_array
    for name in ("numerical_gradient", "numerical_gradient_array"):
        assert _signature(getattr(gradcheck, name)) == _signature(getattr(ch04b, name)), name
        assert "ch04b" in getattr(gradcheck, name).__doc__, "the docstring says where the code lives"
    calls = []
    monkeypatch.setattr(ch04b, "numerical_gradient", lambda f, x, h: calls.append((f, x, h)) or "taught")
    monkeypatch.setattr(ch04b, "numerical_gradient_array",
                        lambda f, x, dout, h: calls.append((f, x, dout, h)) or "taught array")
    f, x, dout = (lambda: 0.0), np.ones(2), np.zeros(2)
    assert nh.numerical_gradient(f, x) == "taught" and nh.numerical_gradient(f, x, h=1e-3) == "taught"
    assert nh.numerical_gradient_array(f, x, dout) == "taught array"
    assert calls == [(f, x, 1e-5), (f, x, 1e-3), (f, x, dout, 1e-5)]


def _fresh(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_package_does_not_import_the_chapter_module():
    result = _fresh("import sys, nndl_helpers, nndl_helpers.gradcheck, nndl_helpers.nbtools; "
                    "print('nndl_helpers.chapters.ch04b' in sys.modules)")
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


def test_a_broken_chapter_module_breaks_only_the_checker():
    """Were ch04b.py broken by an export, `import nndl_helpers` and nbtools (which regenerates it) still work."""
    result = _fresh("import sys; sys.modules['nndl_helpers.chapters.ch04b'] = None  # any import of it fails\n"
                    "import numpy as np, nndl_helpers as nh, nndl_helpers.nbtools\n"
                    "try:\n    nh.numerical_gradient(lambda: 0.0, np.ones(2))\n"
                    "except ImportError:\n    print('ImportError on call')")
    assert result.returncode == 0 and result.stdout.strip() == "ImportError on call", result.stderr[-2000:]


def test_numerical_gradient_refuses_float32():
    x = np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        nh.numerical_gradient(lambda: float(x.sum()), x)


def test_numerical_gradient_array_checks_a_layer_backward():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5))
    dout = rng.normal(size=(3, 5))
    num = nh.numerical_gradient_array(lambda: np.tanh(x), x, dout)
    assert nh.rel_error(num, dout * (1 - np.tanh(x) ** 2)) < 1e-8


def _linear_loss(X, W):
    return ((X @ W) ** 2).sum() / 2


def test_compare_with_autograd_passes_a_right_gradient(capsys):
    rng = np.random.default_rng(2)
    X, W = rng.normal(size=(6, 3)), rng.normal(size=(3, 2))
    dW = X.T @ (X @ W)
    worst = nh.compare_with_autograd({"W": dW}, _linear_loss, {"X": X, "W": W}, label="quadratic")
    out = capsys.readouterr().out
    assert worst < 1e-12
    assert out.startswith("quadratic") and "dW   OK (< 1e-06)" in out


def test_compare_with_autograd_flags_a_wrong_gradient(capsys):
    rng = np.random.default_rng(3)
    X, W = rng.normal(size=(6, 3)), rng.normal(size=(3, 2))
    wrong = X.T @ (X @ W) * 1.01  # a 1% error must not slip through
    worst = nh.compare_with_autograd({"W": wrong}, _linear_loss, {"X": X, "W": W}, label="wrong")
    assert worst > 1e-3
    assert "FAIL" in capsys.readouterr().out


def test_autograd_gradients_with_upstream_gradient():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3))
    dout = rng.normal(size=(2, 3))
    grads = nh.autograd_gradients(lambda x: torch.sigmoid(x), {"x": x}, dout=dout)
    s = 1 / (1 + np.exp(-x))
    assert nh.rel_error(grads["x"], dout * s * (1 - s)) < 1e-12
    with pytest.raises(ValueError, match="pass dout"):
        nh.autograd_gradients(lambda x: x * 2, {"x": x})


def test_verdict_line_is_machine_independent():
    # Errors many orders of magnitude apart give the same passing line: only the verdict shows.
    tiny = nh.verdict_line("affine", {"x": 3e-16, "W": 7.1e-15}, tol=1e-6)
    larger = nh.verdict_line("affine", {"x": 9.9e-7, "W": 4e-8}, tol=1e-6)
    assert tiny == larger == "affine                   dx dW   OK (< 1e-06)"


def test_verdict_line_names_what_fails():
    line = nh.verdict_line("num", {"x": 1e-9, "W": 3e-6})
    assert line.endswith("FAIL: dW 3.0e-06 (tol 1e-06)") and "dx dW" in line
    assert "FAIL: dW 2.0e+00" in nh.verdict_line("num", {"W": 2.0})
    assert "FAIL" in nh.verdict_line("num", {"W": float("nan")})      # NaN is no pass
    assert "OK (< 1e-05)" in nh.verdict_line("num", {"W": 3e-6}, tol=1e-5)
    with pytest.raises(ValueError):
        nh.verdict_line("nothing", {})


def test_check_gradients_prints_both_verdicts_and_returns_the_worst_errors(capsys):
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 4)), "W": rng.standard_normal((4, 2))}
    dout = rng.standard_normal((3, 2))
    forward = lambda: inputs["x"] @ inputs["W"]
    good = {"x": dout @ inputs["W"].T, "W": inputs["x"].T @ dout}
    centred, autograd = nh.check_gradients("affine", forward, good, inputs, lambda x, W: x @ W, dout)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("affine, centred") and out[0].endswith("OK (< 1e-05)")
    assert out[1].startswith("affine, autograd") and out[1].endswith("OK (< 1e-06)")
    assert centred < 1e-7 and autograd < 1e-12
    bad = {"x": good["x"], "W": 1.01 * good["W"]}
    centred, autograd = nh.check_gradients("affine", forward, bad, inputs, lambda x, W: x @ W, dout)
    out = capsys.readouterr().out
    assert out.count("FAIL") == 2 and centred > 1e-3 and autograd > 1e-3
