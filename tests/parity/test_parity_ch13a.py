"""NumPy VAE blocks of notebooks/13a_vae.ipynb (nndl_helpers.chapters.ch13a) against torch.autograd, and the PyTorch VAE's API."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch13a import NumpyVAE, bernoulli_nll, gaussian_kl, negative_elbo, reparameterize_backward, reparameterize_forward
from nndl_helpers.chapters.ch13a_torch import VAE, evaluate_vae, importance_log_likelihood, train_vae, vae_loss, vae_loss_terms

TOL = 1e-6
SHAPES = [(1, 1), (3, 2), (5, 7), (16, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_reparameterize_backward_matches_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    mu, logvar, eps, dz = (rng.standard_normal(shape) for _ in range(4))
    z, cache = reparameterize_forward(mu, logvar, eps)
    np.testing.assert_allclose(z, mu + np.exp(0.5 * logvar) * eps)
    dmu, dlogvar = reparameterize_backward(dz, cache)
    ref = nh.autograd_gradients(lambda mu, logvar, eps: mu + torch.exp(0.5 * logvar) * eps,
                                {"mu": mu, "logvar": logvar, "eps": eps}, wrt=["mu", "logvar"], dout=dz)
    assert nh.rel_error(dmu, ref["mu"]) < TOL
    assert nh.rel_error(dlogvar, ref["logvar"]) < TOL


@pytest.mark.parametrize("shape", SHAPES)
def test_gaussian_kl_matches_autograd(shape):
    rng = np.random.default_rng(sum(shape))
    mu, logvar = 2 * rng.standard_normal(shape), 2 * rng.standard_normal(shape)
    kl, dmu, dlogvar = gaussian_kl(mu, logvar)

    def torch_kl(mu, logvar):
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        return torch.distributions.kl_divergence(q, p).sum() / len(mu)

    ref = nh.autograd_gradients(torch_kl, {"mu": mu, "logvar": logvar})
    mu_t, logvar_t = torch.from_numpy(mu), torch.from_numpy(logvar)
    assert abs(kl - torch_kl(mu_t, logvar_t).item()) < 1e-10 * max(1.0, abs(kl))
    assert nh.rel_error(dmu, ref["mu"]) < TOL and nh.rel_error(dlogvar, ref["logvar"]) < TOL


def test_gaussian_kl_is_zero_at_the_prior():
    kl, dmu, dlogvar = gaussian_kl(np.zeros((4, 3)), np.zeros((4, 3)))
    assert kl == 0.0 and not dmu.any() and not dlogvar.any()


@pytest.mark.parametrize("shape", [(1, 1), (4, 6), (9, 64)])
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_bernoulli_nll_matches_autograd(shape, scale):
    rng = np.random.default_rng(shape[1])
    logits, x = scale * rng.standard_normal(shape), rng.uniform(size=shape)
    nll, dlogits = bernoulli_nll(logits, x)

    def torch_nll(logits, x):
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)

    ref = nh.autograd_gradients(torch_nll, {"logits": logits, "x": x}, wrt=["logits"])
    assert abs(nll - torch_nll(torch.from_numpy(logits), torch.from_numpy(x)).item()) < 1e-9 * max(1.0, nll)
    assert nh.rel_error(dlogits, ref["logits"]) < TOL


def test_bernoulli_nll_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 800.0, -800.0]])
    nll, dlogits = bernoulli_nll(logits, np.array([[1.0, 0.0, 0.0, 1.0]]))
    assert np.isfinite(nll) and np.isfinite(dlogits).all()
    assert nll == pytest.approx(1600.0)


def torch_numpy_vae_loss(model, act):
    def loss(X, eps, **p):
        k = model.latent_dim
        stats = act(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        mu, logvar = stats[:, :k], stats[:, k:]
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = act(z @ p["W3"] + p["b3"]) @ p["W4"] + p["b4"]
        rec = F.binary_cross_entropy_with_logits(logits, X, reduction="sum") / len(X)
        return rec + 0.5 * torch.sum(mu**2 + logvar.exp() - 1 - logvar) / len(X)
    return loss


@pytest.mark.parametrize("dims", [(6, 5, 2, 4), (7, 3, 1, 1), (64, 17, 3, 9)])
@pytest.mark.parametrize("activation,act", [("relu", torch.relu), ("tanh", torch.tanh), ("softplus", F.softplus)])
def test_numpy_vae_backward_matches_autograd(dims, activation, act):
    input_dim, hidden, latent_dim, n = dims
    rng = np.random.default_rng(input_dim + hidden)
    model = NumpyVAE(input_dim, hidden, latent_dim, activation=activation, seed=n)
    X, eps = rng.uniform(size=(n, input_dim)), rng.standard_normal((n, latent_dim))
    loss, grads = model.loss(X, eps)
    terms = model.loss_terms(X, eps)
    assert set(terms) == {"reconstruction", "kl"} and loss == pytest.approx(terms["reconstruction"] + terms["kl"])
    inputs = {"X": X, "eps": eps, **model.params}
    torch_loss = torch_numpy_vae_loss(model, act)
    ref = nh.autograd_gradients(torch_loss, inputs, wrt=list(model.params))
    assert loss == pytest.approx(torch_loss(**{k: torch.from_numpy(v) for k, v in inputs.items()}).item(), rel=1e-12)
    for k in model.params:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


def test_numpy_vae_gradient_check_can_fail():
    """A backward that forgets the KL term's gradient is caught."""
    rng = np.random.default_rng(0)
    model = NumpyVAE(6, 5, 2, activation="tanh", seed=0)
    X, eps = rng.uniform(size=(4, 6)), rng.standard_normal((4, 2))
    _, grads = model.loss(X, eps)
    ref = nh.autograd_gradients(torch_numpy_vae_loss(model, torch.tanh), {"X": X, "eps": eps, **model.params},
                                wrt=list(model.params))
    wrong = grads["W2"].copy()
    h = np.tanh(X @ model.params["W1"] + model.params["b1"])
    mu = model.encode(X)[0]
    wrong[:, :2] -= h.T @ (mu / len(X))   # drop the KL part of dmu
    assert nh.rel_error(grads["W2"], ref["W2"]) < TOL
    assert nh.rel_error(wrong, ref["W2"]) > 1e-3


def test_numpy_vae_forward_backward_and_call():
    """forward returns the logits and mu, logvar; backward takes a gradient for each of the three."""
    rng = np.random.default_rng(3)
    model = NumpyVAE(5, 4, 2, activation="tanh", seed=1)
    X, eps = rng.uniform(size=(3, 5)), rng.standard_normal((3, 2))
    logits, mu, logvar, cache = model.forward(X, eps)
    np.testing.assert_array_equal(logits, model(X, eps))
    np.testing.assert_array_equal(model(X), model.decode(mu))          # eps=None decodes the mean code
    np.testing.assert_array_equal(mu, model.encode(X)[0])
    dlogits, dmu, dlogvar = (rng.standard_normal(a.shape) for a in (logits, mu, logvar))

    def torch_outputs(X, eps, **p):
        stats = torch.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        mu, logvar = stats[:, :2], stats[:, 2:]
        logits = torch.tanh((mu + torch.exp(0.5 * logvar) * eps) @ p["W3"] + p["b3"]) @ p["W4"] + p["b4"]
        return sum((a * torch.from_numpy(d)).sum() for a, d in ((logits, dlogits), (mu, dmu), (logvar, dlogvar)))

    ref = nh.autograd_gradients(torch_outputs, {"X": X, "eps": eps, **model.params}, wrt=list(model.params))
    grads = model.backward(dlogits, dmu, dlogvar, cache)
    assert set(grads) == set(model.params)
    for k in grads:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


def test_negative_elbo_averages_the_loss_terms():
    rng = np.random.default_rng(4)
    model = NumpyVAE(6, 5, 2, seed=0)
    X = rng.uniform(size=(7, 6))
    eps = np.random.default_rng(9).standard_normal((7, 2))
    expected = sum(model.loss_terms(X, eps).values())
    assert negative_elbo(model, X, np.random.default_rng(9), batch_size=7) == pytest.approx(expected, rel=1e-12)
    # batches of 3, 3 and 1 rows draw the same noise, row by row
    assert negative_elbo(model, X, np.random.default_rng(9), batch_size=3) == pytest.approx(expected, rel=1e-12)


def test_numpy_vae_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        NumpyVAE(64).loss(np.zeros((3, 784)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same shape"):
        reparameterize_forward(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown activation"):
        NumpyVAE(4, activation="swish2")


# ---- the PyTorch VAE (the API later notebooks rely on) ------------------------------------------

def test_vae_shapes_and_loss():
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden=16)
    x = torch.rand(5, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    assert model.decode(mu).shape == (5, 1, 28, 28)
    logits, mu, logvar = model(x)
    loss = vae_loss(logits, x, mu, logvar)
    rec, kl = vae_loss_terms(logits, x, mu, logvar)
    assert loss.ndim == 0 and torch.isclose(loss, rec + kl)
    manual = (F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
              + 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)).mean()
    assert torch.isclose(loss, manual, rtol=1e-5)


def test_vae_bad_input():
    model = VAE(latent_dim=2, hidden=8)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        model.encode(torch.rand(3, 784))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        model.decode(torch.rand(3, 5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_vae(model, np.full((4, 1, 28, 28), 255, dtype=np.float32), epochs=1)
    with pytest.raises(ValueError, match="at least one image"):
        train_vae(model, np.zeros((0, 1, 28, 28), dtype=np.float32), epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        train_vae(model, np.zeros((4, 1, 28, 28), dtype=np.float32), epochs=1, batch_size=0)


def test_train_vae_learns_reproducibly_and_evaluation_is_deterministic():
    rng = np.random.default_rng(0)
    X = (rng.uniform(size=(64, 1, 28, 28)) < 0.2).astype(np.float32)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = VAE(latent_dim=2, hidden=32)
        steps = []
        losses = train_vae(model, X, epochs=3, batch_size=16, on_step=lambda s, l: steps.append(s))
        runs.append(losses)
    assert len(losses) == 12 and steps == list(range(12))
    assert runs[0] == runs[1]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    first, second = evaluate_vae(model, X), evaluate_vae(model, torch.from_numpy(X))
    assert first == second and first[0] == pytest.approx(first[1] + first[2])
    # evaluating does not disturb the global random state that training uses
    torch.manual_seed(1)
    a = torch.rand(1)
    torch.manual_seed(1)
    evaluate_vae(model, X)
    assert torch.rand(1) == a
    # the importance-weighted estimate of log p(x) is not below the ELBO (up to sampling noise)
    log_px = importance_log_likelihood(model, X, samples=32)
    assert log_px > -first[0] - 1.0
