"""Notebook 09's NumPy code (nndl_helpers.chapters.ch09) against torch.autograd and linear algebra, in float64.

Every backward the notebook teaches is compared with autograd on random shapes, odd sizes
included: the affine stack and the KL sparsity penalty on their own, and whole autoencoders
(deep, sparse with L2, denoising with a corrupted input, several activations). PCA is compared with torch's
eigen-decomposition, K-means with its defining properties. Bad input must fail with a ValueError.
"""
import numpy as np
import pytest
import torch

import nndl_helpers as nh
from nndl_helpers.chapters import ch09, ch09_torch

TOL = 1e-6
TORCH_ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                     "identity": lambda z: z, "softplus": torch.nn.functional.softplus}


def torch_kl(a, rho):
    rho_hat = a.mean(dim=0)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def torch_loss(model):
    """The autoencoder's loss written independently in torch, as a function of x, x_input and the params."""
    sparsity_weight, l2_weight = getattr(model, "sparsity_weight", 0.0), getattr(model, "l2", 0.0)

    def loss_fn(x, x_input, **params):
        n_layers = len(model.sizes) - 1
        n_hidden = (n_layers - 2) // 2
        acts = ([model.activations[0]] * n_hidden + [model.activations[model.code_layer - 1]]
                + [model.activations[0]] * n_hidden + ["sigmoid"])
        a, penalty = x_input, 0.0
        for l in range(1, n_layers + 1):
            a = TORCH_ACTIVATIONS[acts[l - 1]](a @ params[f"W{l}"] + params[f"b{l}"])
            if l == n_hidden + 1 and sparsity_weight:
                penalty = sparsity_weight * torch_kl(a, model.sparsity_target)
        l2 = sum((params[f"W{l}"] ** 2).sum() for l in range(1, n_layers + 1))
        return 0.5 * ((a - x) ** 2).sum() / x.shape[0] + penalty + 0.5 * l2_weight * l2
    return loss_fn


@pytest.mark.parametrize("sizes, activations", [
    ([3, 2], ["identity"]),
    ([4, 5, 3, 2], ["tanh", "sigmoid", "identity"]),
    ([2, 6, 6, 1], ["relu", "softplus", "sigmoid"]),
])
@pytest.mark.parametrize("first", [1, 3])
def test_affine_stack_matches_autograd(sizes, activations, first):
    rng = np.random.default_rng([len(sizes), first])
    params = {}
    for l, (m_in, m_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=first):
        params[f"W{l}"], params[f"b{l}"] = rng.standard_normal((m_in, m_out)), rng.standard_normal(m_out)
    x, dout = rng.standard_normal((5, sizes[0])), rng.standard_normal((5, sizes[-1]))
    out, cache = ch09.affine_stack_forward(x, params, activations=activations, first=first)

    def torch_stack(x, **p):
        for l, name in enumerate(activations, start=first):
            x = TORCH_ACTIVATIONS[name](x @ p[f"W{l}"] + p[f"b{l}"])
        return x

    tensors = {k: torch.from_numpy(v) for k, v in params.items()}
    np.testing.assert_allclose(out, torch_stack(torch.from_numpy(x), **tensors).numpy(), rtol=1e-12, atol=1e-12)
    grads = ch09.affine_stack_backward(dout, cache)
    ref = nh.autograd_gradients(torch_stack, {"x": x, **params}, dout=dout)
    assert set(grads) == {"x", *params}
    for k in grads:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (16, 9)])
@pytest.mark.parametrize("rho", [0.01, 0.05, 0.3])
def test_kl_sparsity_matches_autograd(shape, rho):
    rng = np.random.default_rng(list(shape) + [int(rho * 100)])
    a = 1 / (1 + np.exp(-2 * rng.standard_normal(shape)))
    penalty, da = ch09.kl_sparsity_penalty(a, rho)
    ref = torch_kl(torch.from_numpy(a), rho).item()
    assert abs(penalty - ref) <= 1e-10 * max(1.0, abs(ref))
    grads = nh.autograd_gradients(lambda a: torch_kl(a, rho), {"a": a})
    assert da.shape == a.shape
    assert nh.rel_error(da, grads["a"]) < TOL


def test_kl_sparsity_is_zero_at_the_target_and_finite_when_saturated():
    penalty, da = ch09.kl_sparsity_penalty(np.full((4, 3), 0.2), 0.2)
    assert abs(penalty) < 1e-12 and np.abs(da).max() < 1e-12
    with np.errstate(all="raise"):
        penalty, da = ch09.kl_sparsity_penalty(np.ones((4, 3), dtype=np.float32), 0.05)
    assert np.isfinite(penalty) and np.all(np.isfinite(da)) and penalty > 10


CONFIGS = [
    dict(input_dim=5, code_size=2, hidden=(4,)),
    dict(input_dim=7, code_size=3, hidden=(6, 5), activation="tanh"),
    dict(input_dim=4, code_size=2, code_activation="sigmoid"),
    dict(input_dim=6, code_size=9, sparsity_weight=0.7, sparsity_target=0.1, l2=0.03),
    dict(input_dim=4, code_size=3, hidden=(5,), activation="softplus", sparsity_weight=2.0, sparsity_target=0.3),
    dict(input_dim=3, code_size=1, sparsity_weight=0.0, l2=0.1),
]


@pytest.mark.parametrize("noise", [0.0, 0.5])
@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if k != "input_dim"))
def test_autoencoder_matches_autograd(config, batch, noise):
    rng = np.random.default_rng([batch, int(noise * 10), config["code_size"], config["input_dim"]])
    cls = ch09.SparseAutoencoder if "sparsity_weight" in config else ch09.Autoencoder
    model = cls(**config, seed=batch)
    x = rng.uniform(0, 1, (batch, config["input_dim"]))
    x_input = ch09.masking_noise(x, noise, rng)
    loss, grads = model.loss(x, x_input)
    fn = torch_loss(model)
    inputs = {k: torch.from_numpy(v) for k, v in model.params.items()}
    ref_loss = fn(torch.from_numpy(x), torch.from_numpy(x_input), **inputs).item()
    assert abs(loss - ref_loss) <= 1e-10 * max(1.0, abs(ref_loss))
    ref = nh.autograd_gradients(fn, {"x": x, "x_input": x_input, **model.params}, wrt=list(model.params))
    assert set(grads) == set(model.params)
    for k in grads:
        assert grads[k].shape == model.params[k].shape
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    if cls is ch09.SparseAutoencoder:
        assert sum(model.loss_terms(x, x_input).values()) == pytest.approx(loss, rel=1e-12)


def test_forward_returns_the_code_and_backward_takes_its_gradient():
    rng = np.random.default_rng(2)
    model = ch09.Autoencoder(5, 2, hidden=(4,), activation="tanh", seed=0)
    x = rng.uniform(0, 1, (3, 5))
    x_hat, z, cache = model.forward(x)
    np.testing.assert_array_equal(x_hat, model(x))
    np.testing.assert_array_equal(x_hat, model.reconstruct(x))
    np.testing.assert_array_equal(z, model.encode(x))
    dx_hat, dz = rng.standard_normal(x_hat.shape), rng.standard_normal(z.shape)

    def torch_outputs(x, **p):
        z = torch.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        x_hat = torch.sigmoid(torch.tanh(z @ p["W3"] + p["b3"]) @ p["W4"] + p["b4"])
        return (x_hat * torch.from_numpy(dx_hat)).sum() + (z * torch.from_numpy(dz)).sum()

    ref = nh.autograd_gradients(torch_outputs, {"x": x, **model.params}, wrt=list(model.params))
    grads = model.backward(dx_hat, dz, cache)
    assert set(grads) == set(model.params)
    for k in grads:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    without = model.backward(dx_hat, None, cache)
    np.testing.assert_array_equal(without["W4"], grads["W4"])        # dz reaches only the encoder
    assert nh.rel_error(without["W1"], grads["W1"]) > 1e-3


def test_autoencoder_gradient_matches_centred_differences():
    rng = np.random.default_rng(3)
    model = ch09.SparseAutoencoder(6, 4, hidden=(5,), sparsity_weight=0.5, l2=0.01, seed=4)
    x = rng.uniform(0, 1, (5, 6))
    _, grads = model.loss(x)
    for k, p in model.params.items():
        numeric = nh.numerical_gradient(lambda: model.loss(x)[0], p)
        assert nh.rel_error(grads[k], numeric) < 1e-6, k


def test_a_wrong_backward_would_be_caught():
    """The comparison is sharp enough to see a dropped sparsity gradient."""
    rng = np.random.default_rng(5)
    model = ch09.SparseAutoencoder(5, 3, sparsity_weight=1.0, sparsity_target=0.05, seed=0)
    x = rng.uniform(0, 1, (4, 5))
    ref = nh.autograd_gradients(torch_loss(model), {"x": x, "x_input": x, **model.params}, wrt=["W1"])
    model.sparsity_weight = 0.0          # the backward now ignores the KL term the reference still has
    _, grads = model.loss(x)
    model.sparsity_weight = 1.0
    assert nh.rel_error(grads["W1"], ref["W1"]) > 1e-3


def test_masking_noise_zeroes_about_p_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1, (200, 50))
    y = ch09.masking_noise(x, 0.3, rng)
    zeroed = y == 0
    assert 0.27 < zeroed.mean() < 0.33
    assert np.array_equal(y[~zeroed], x[~zeroed])
    assert np.array_equal(ch09.masking_noise(x, 0.0, rng), x)


@pytest.mark.parametrize("n, d", [(50, 7), (9, 12), (200, 3)])
def test_pca_matches_torch_eigh_and_svd(n, d):
    rng = np.random.default_rng([n, d])
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    eig = ch09.PCA("eigh").fit(X)
    svd = ch09.PCA("svd").fit(X)
    k = min(n, d) - 1   # when n <= d the last direction carries ~0 variance and is not unique
    Xc = torch.from_numpy(X - X.mean(0))
    ref = torch.linalg.eigvalsh(Xc.T @ Xc / n).flip(0).numpy()[:k]
    assert nh.rel_error(eig.variances[:k], ref) < TOL and nh.rel_error(svd.variances[:k], ref) < TOL
    assert nh.rel_error(eig.components[:k], svd.components[:k]) < TOL
    assert np.allclose(eig.components @ eig.components.T, np.eye(len(eig.components)), atol=1e-10)
    # with every component kept, PCA reconstructs the data exactly
    assert np.allclose(eig.reconstruct(X, len(eig.components)), X, atol=1e-8) or n <= d
    # the training error is the sum of the dropped eigenvalues
    kk = max(1, k // 2)
    err = ch09.reconstruction_mse(eig.reconstruct(X, kk), X) * d
    assert abs(err - eig.variances[kk:].sum()) < 1e-8 * max(1.0, eig.variances.sum())


def test_kmeans_decreases_its_objective_and_finds_clear_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.concatenate([c + rng.standard_normal((40, 2)) for c in centres])
    found, labels, inertia = ch09.kmeans(X, 3, rng=np.random.default_rng(1))
    assert all(b <= a + 1e-9 for a, b in zip(inertia, inertia[1:]))
    assert sorted(np.bincount(labels).tolist()) == [40, 40, 40]
    assert np.abs(np.sort(found[:, 0] + 10 * found[:, 1]) - np.sort(centres[:, 0] + 10 * centres[:, 1])).max() < 5
    d = ch09.squared_distances(X, found)
    assert np.allclose(d, ((X[:, None] - found[None]) ** 2).sum(-1))


def test_conv_autoencoder_shapes():
    model = ch09_torch.ConvAutoencoder(code_size=3, channels=(2, 3))
    x = torch.rand(2, 1, 28, 28)
    assert model.encode(x).shape == (2, 3) and model(x).shape == (2, 1, 28, 28)
    assert model(x.reshape(2, 784)).shape == (2, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("call, words", [
    (lambda: ch09.kl_sparsity_penalty(np.full((2, 3), 0.5), 0.0), "strictly between 0 and 1"),
    (lambda: ch09.kl_sparsity_penalty(np.full((2, 3), 1.5), 0.1), "[0, 1]"),
    (lambda: ch09.kl_sparsity_penalty(np.full(3, 0.5), 0.1), "2-D"),
    (lambda: ch09.masking_noise(np.ones(3), 1.0, np.random.default_rng(0)), "[0, 1)"),
    (lambda: ch09.SparseAutoencoder(5, 2, sparsity_target=1.0), "sparsity_target in (0, 1)"),
    (lambda: ch09.SparseAutoencoder(5, 2, sparsity_weight=-1.0), "sparsity_weight >= 0"),
    (lambda: ch09.Autoencoder(5, 2, activation="swish"), "unknown activation"),
    (lambda: ch09.Autoencoder(5, 0), ">= 1"),
    (lambda: ch09.Autoencoder(5, 2).loss(np.ones((3, 4))), "(N, 5)"),
    (lambda: ch09.Autoencoder(5, 2).loss(np.ones((3, 5)), np.ones((2, 5))), "X_input"),
    (lambda: ch09.Autoencoder(5, 2)(np.ones((3, 28, 28))), "(N, 5)"),
    (lambda: ch09.PCA("qr"), "unknown PCA method"),
    (lambda: ch09.PCA().fit(np.ones((4, 2, 2))), "2-D"),
    (lambda: ch09.PCA().fit(np.ones((1, 3))), "at least 2 rows"),
    (lambda: ch09.PCA().fit(np.array([[1.0, np.nan], [0.0, 1.0]])), "NaN"),
    (lambda: ch09.PCA().fit(np.eye(3)).transform(np.eye(3), k=5), "k must lie in [1, 3]"),
    (lambda: ch09.PCA().fit(np.eye(3)).transform(np.ones((2, 4))), "fitted on 3 features"),
    (lambda: ch09.kmeans(np.eye(3), 4), "k must be an integer"),
    (lambda: ch09.reconstruction_mse(np.ones(3), np.ones(4)), "shape"),
    (lambda: ch09_torch.ConvAutoencoder(2)(torch.zeros(2, 3, 28, 28)), "(N, 1, 28, 28)"),
    (lambda: ch09_torch.ConvAutoencoder(2).decode(torch.zeros(2, 5)), "codes of shape (N, 2)"),
])
def test_bad_input_raises_a_clear_error(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value)
