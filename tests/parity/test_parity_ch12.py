"""Boltzmann machines, RBMs and DBNs of notebooks/12_deep_belief_networks.ipynb (nndl_helpers.chapters.ch12)
against torch.autograd, brute-force enumeration, scikit-learn, and the PyTorch twin (ch12_torch)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import logsumexp

import nndl_helpers as nh
from nndl_helpers.chapters.ch07a import SGD
from nndl_helpers.chapters.ch12 import (
    RBM, ais_betas, ais_log_partition, all_states, bm_energy, bm_exact_distribution, bm_gibbs_sweep,
    bm_sweep_distribution, dbn_classifier, fit_rbm, free_energy_backward, free_energy_forward,
    pretrain_dbn, rbm_exact_nll_gradient, rbm_log_partition, sample_bernoulli, total_variation)
from nndl_helpers.chapters.ch12_torch import DBNClassifier, TorchRBM, fit_torch_rbm

TOL = 1e-6


def torch_free_energy(v, W, b, c):
    return -(v @ b) - F.softplus(v @ W + c).sum(1)


def random_rbm(D, H, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((D, H)), rng.standard_normal(D), rng.standard_normal(H)


@pytest.mark.parametrize("D,H,N", [(1, 1, 1), (5, 3, 4), (12, 8, 6), (7, 11, 2), (30, 20, 9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_free_energy_backward_matches_autograd(D, H, N, seed):
    W, b, c = random_rbm(D, H, seed, scale=2.0)
    rng = np.random.default_rng(seed + 10)
    v = (rng.random((N, D)) < 0.5).astype(np.float64)
    dF = rng.standard_normal(N)
    Fv, cache = free_energy_forward(v, W, b, c)
    np.testing.assert_allclose(Fv, torch_free_energy(*map(torch.from_numpy, (v, W, b, c))).numpy(), rtol=1e-9)  # torch: softplus(x) = x above 20
    dv, dW, db, dc = free_energy_backward(dF, cache)
    ref = nh.autograd_gradients(torch_free_energy, {"v": v, "W": W, "b": b, "c": c}, dout=dF)
    for name, mine in [("v", dv), ("W", dW), ("b", db), ("c", dc)]:
        assert nh.rel_error(mine, ref[name]) < TOL, name


def test_free_energy_is_stable_for_huge_inputs():
    W = np.full((3, 2), 500.0)
    Fv, cache = free_energy_forward(np.ones((1, 3)), W, np.zeros(3), np.zeros(2))
    assert np.isfinite(Fv).all() and Fv[0] == pytest.approx(-3000.0)
    assert all(np.isfinite(g).all() for g in free_energy_backward(np.ones(1), cache))


@pytest.mark.parametrize("k,persistent", [(1, False), (3, False), (1, True)])
def test_rbm_loss_gradient_matches_autograd_of_the_cd_surrogate(k, persistent):
    model = RBM(9, 6, k=k, persistent=persistent, weight_std=0.7, seed=2, dtype=np.float64)
    V = (np.random.default_rng(3).random((8, 9)) < 0.4).astype(np.float64)
    if persistent:
        model.chain = V.copy()
    chain_before = None if model.chain is None else model.chain.copy()
    loss, grads = model.loss(V, np.random.default_rng(4))
    V_neg = model.gibbs(V if chain_before is None else chain_before, k, np.random.default_rng(4))
    if persistent:
        np.testing.assert_array_equal(model.chain, V_neg)

    def surrogate(W, b, c):
        return torch_free_energy(torch.from_numpy(V), W, b, c).mean() - torch_free_energy(torch.from_numpy(V_neg), W, b, c).mean()

    ref = nh.autograd_gradients(surrogate, model.params)
    for name in "Wbc":
        assert nh.rel_error(grads[name], ref[name]) < TOL, name
    assert loss == pytest.approx(surrogate(*(torch.from_numpy(model.params[p]) for p in "Wbc")).item(), rel=1e-12)


@pytest.mark.parametrize("D,H", [(12, 8), (5, 9), (9, 5), (1, 3)])
def test_log_partition_equals_brute_force(D, H):
    W, b, c = random_rbm(D, H, D * 10 + H)
    V, Hs = all_states(D), all_states(H)
    joint = (V @ b)[:, None] + (Hs @ c)[None, :] + V @ W @ Hs.T          # -E(v, h) over all (v, h)
    assert rbm_log_partition(W, b, c) == pytest.approx(logsumexp(joint), abs=1e-9)


@pytest.mark.parametrize("D,H", [(6, 4), (4, 7)])
def test_exact_nll_gradient_matches_autograd(D, H):
    W, b, c = random_rbm(D, H, 5)
    V = (np.random.default_rng(6).random((7, D)) < 0.5).astype(np.float64)
    states = torch.from_numpy(all_states(D))

    def nll(W, b, c):
        log_z = torch.logsumexp(-torch_free_energy(states, W, b, c), 0)
        return torch_free_energy(torch.from_numpy(V), W, b, c).mean() + log_z

    grads = rbm_exact_nll_gradient(V, W, b, c)
    ref = nh.autograd_gradients(nll, {"W": W, "b": b, "c": c})
    for name in "Wbc":
        assert nh.rel_error(grads[name], ref[name]) < TOL, name


def test_boltzmann_machine_exact_distribution_and_gibbs():
    rng = np.random.default_rng(0)
    W = np.triu(rng.normal(0, 1, (6, 6)), 1)
    W, b = W + W.T, rng.normal(0, 1, 6)
    states, p = bm_exact_distribution(W, b)
    assert p.sum() == pytest.approx(1.0) and np.all(p > 0)
    np.testing.assert_allclose(np.log(p[1:] / p[0]), -(bm_energy(states[1:], W, b) - bm_energy(states[:1], W, b)))
    np.testing.assert_allclose(bm_sweep_distribution(p, W, b), p, atol=1e-12)     # p is stationary
    S = np.zeros((20_000, 6))
    for _ in range(10):
        bm_gibbs_sweep(S, W, b, rng)
    hist = np.bincount((S @ 2 ** np.arange(5, -1, -1)).astype(int), minlength=64) / len(S)
    q = np.zeros(64)
    q[0] = 1.0
    for _ in range(10):
        q = bm_sweep_distribution(q, W, b)
    assert total_variation(hist, q) < 0.05          # the sampled chains follow the exact chain distribution


def test_ais_matches_the_exact_log_partition():
    W, b, c = random_rbm(10, 6, 8, scale=0.8)
    log_z, log_w = ais_log_partition(W, b, c, betas=ais_betas(500), n_runs=400, rng=np.random.default_rng(0))
    assert log_w.shape == (400,)
    assert abs(log_z - rbm_log_partition(W, b, c)) < 0.05


def test_free_energy_matches_scikit_learn():
    from sklearn.neural_network import BernoulliRBM

    W, b, c = random_rbm(8, 5, 9)
    sk = BernoulliRBM(n_components=5)
    sk.components_, sk.intercept_visible_, sk.intercept_hidden_ = W.T, b, c
    v = (np.random.default_rng(1).random((6, 8)) < 0.5).astype(np.float64)
    np.testing.assert_allclose(free_energy_forward(v, W, b, c)[0], sk._free_energy(v), rtol=1e-12)


@pytest.mark.parametrize("k,persistent,momentum", [(1, True, 0.0), (2, False, 0.5)])
def test_torch_rbm_replays_numpy_exactly(k, persistent, momentum):
    X = (np.random.default_rng(0).random((120, 20)) < 0.3).astype(np.float64)
    numpy_rbm = RBM(20, 7, k=k, persistent=persistent, weight_std=0.1, seed=1, dtype=np.float64)
    torch_rbm = TorchRBM.from_numpy(numpy_rbm.params, k=k, persistent=persistent, dtype=torch.float64)
    fit_rbm(numpy_rbm, X, epochs=2, batch_size=25, optimizer=SGD(lr=0.1, momentum=momentum), rng=np.random.default_rng(5))
    fit_torch_rbm(torch_rbm, torch.from_numpy(X), epochs=2, batch_size=25,
                  optimizer=torch.optim.SGD(torch_rbm.parameters(), lr=0.1, momentum=momentum), rng=np.random.default_rng(5))
    for name in "Wbc":
        np.testing.assert_allclose(getattr(torch_rbm, name).detach().numpy(), numpy_rbm.params[name], atol=1e-12)


def test_torch_rbm_trains_with_its_own_random_numbers():
    X = torch.from_numpy((np.random.default_rng(0).random((64, 10)) < 0.5).astype(np.float32))
    model = TorchRBM(10, 4, k=1)
    history = fit_torch_rbm(model, X, epochs=2, batch_size=16, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                            generator=torch.Generator().manual_seed(0))
    assert len(history) == 2 and all(np.isfinite(history))


def test_dbn_module_equals_the_numpy_mlp():
    X = (np.random.default_rng(0).random((40, 16)) < 0.5).astype(np.float32)
    rbms = pretrain_dbn(X, [8, 6], epochs=1, batch_size=10, lr=0.1, rng=np.random.default_rng(1))
    mlp = dbn_classifier(rbms, 3, seed=2)
    module = DBNClassifier.from_rbms(rbms, 3)
    with torch.no_grad():
        module.out.weight.copy_(torch.from_numpy(mlp.params["W3"].T.copy()))
        module.out.bias.copy_(torch.from_numpy(mlp.params["b3"]))
        out = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, mlp(X), atol=1e-5)
    assert [f.shape for f in module.features(torch.from_numpy(X))] == [(40, 8), (40, 6)]


def test_bad_input_is_refused_with_a_clear_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="binary"):
        RBM(4, 3).loss(np.full((2, 4), 0.5), rng)
    with pytest.raises(ValueError, match="binary"):
        fit_rbm(RBM(4, 3), np.full((2, 4), 0.3), epochs=1, batch_size=2, optimizer=SGD(lr=0.1), rng=rng)
    with pytest.raises(ValueError, match="Gibbs steps"):
        RBM(4, 3, k=0)
    with pytest.raises(ValueError, match="Gibbs steps"):
        RBM(4, 3).gibbs(np.zeros((1, 4)), 1.5, rng)
    with pytest.raises(ValueError, match="temperature"):
        RBM(4, 3).gibbs(np.zeros((1, 4)), 1, rng, T=0.0)
    with pytest.raises(ValueError, match="temperature"):
        bm_exact_distribution(np.zeros((2, 2)), np.zeros(2), T=-1.0)
    with pytest.raises(ValueError, match="Gibbs steps"):
        TorchRBM(4, 3, k=0)
    with pytest.raises(ValueError, match="temperature"):
        TorchRBM(4, 3).gibbs(torch.zeros(1, 4), 1, T=0.0)
    with pytest.raises(ValueError, match="binary"):
        fit_torch_rbm(TorchRBM(4, 3), torch.full((2, 4), 0.5), epochs=1, batch_size=2,
                      optimizer=torch.optim.SGD(TorchRBM(4, 3).parameters(), lr=0.1))
    with pytest.raises(ValueError, match="betas"):
        ais_log_partition(np.zeros((2, 2)), np.zeros(2), np.zeros(2), betas=[0.0, 0.5], n_runs=2, rng=rng)
    with pytest.raises(ValueError):
        free_energy_forward(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(4), np.zeros(2))


def test_sample_bernoulli_keeps_dtype_and_frequency():
    p = np.full((20_000,), 0.3, np.float32)
    s = sample_bernoulli(p, np.random.default_rng(0))
    assert s.dtype == np.float32 and set(np.unique(s)) <= {0.0, 1.0} and abs(s.mean() - 0.3) < 0.02
