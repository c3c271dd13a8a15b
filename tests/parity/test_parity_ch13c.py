"""Diffusion blocks of notebooks/13c_diffusion.ipynb (nndl_helpers.chapters.ch13c) against torch.autograd and brute force."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch08a import sinusoidal_positional_encoding
from nndl_helpers.chapters.ch13c import SCHEDULES, DenoiserMLP, NoiseSchedule, ddim_sample, ddpm_sample, energy_distance, eps_mse_loss, q_sample, sampling_timesteps, train_denoiser
from nndl_helpers.chapters.ch13c_torch import TinyUNet, torch_eps_predictor, train_ddpm
from nndl_helpers.chapters.ch13b_torch import score_generated

TOL = 1e-6
TORCH_ACTIVATIONS = {"relu": torch.relu, "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                     "softplus": F.softplus, "elu": F.elu}


def torch_denoiser(model, x, t, params):
    e = torch.from_numpy(model.embed(t)).to(x.dtype)
    act, h = TORCH_ACTIVATIONS[model.activation], x
    for l in range(1, model.depth + 2):
        z = torch.cat([h, e], dim=1) @ params[f"W{l}"] + params[f"b{l}"]
        h = act(z) if l <= model.depth else z
    return h


DENOISERS = [(2, 7, 2, 4, "silu", 5), (3, 6, 3, 6, "tanh", 4), (8, 5, 1, 4, "relu", 3),
             (1, 3, 1, 2, "softplus", 1), (5, 9, 2, 10, "elu", 7), (4, 4, 4, 8, "sigmoid", 2)]


@pytest.mark.parametrize("data_dim, hidden, depth, emb_dim, activation, n", DENOISERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_denoiser_backward_matches_autograd(data_dim, hidden, depth, emb_dim, activation, n, seed):
    rng = np.random.default_rng(seed)
    model = DenoiserMLP(data_dim, hidden, depth, emb_dim, activation=activation, T=30, seed=seed)
    for p in model.params.values():      # non-zero biases and a last layer of normal size
        p += 0.3 * rng.standard_normal(p.shape)
    x, t, dout = rng.standard_normal((n, data_dim)), rng.integers(1, 31, n), rng.standard_normal((n, data_dim))
    out, caches = model.forward(x, t)
    grads = model.backward(dout, caches)
    dx = grads.pop("x")
    np.testing.assert_array_equal(out, model(x, t))
    ref = nh.autograd_gradients(lambda x, **params: torch_denoiser(model, x, t, params),
                                {"x": x, **model.params}, dout=dout)
    np.testing.assert_allclose(out, torch_denoiser(model, torch.from_numpy(x), t,
                                                   {k: torch.from_numpy(v) for k, v in model.params.items()}).numpy(),
                               rtol=1e-12, atol=1e-12)
    assert nh.rel_error(dx, ref["x"]) < TOL
    for k in model.params:
        assert grads[k].shape == model.params[k].shape
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


def test_denoiser_backward_matches_centred_differences():
    rng = np.random.default_rng(3)
    model = DenoiserMLP(3, 5, 2, 4, activation="tanh", T=10, seed=3)
    x, t, dout = rng.standard_normal((4, 3)), rng.integers(1, 11, 4), rng.standard_normal((4, 3))
    grads = model.backward(dout, model.forward(x, t)[1])
    dx = grads.pop("x")
    forward = lambda: model.forward(x, t)[0]
    assert nh.rel_error(nh.numerical_gradient_array(forward, x, dout), dx) < TOL
    for k, p in model.params.items():
        assert nh.rel_error(nh.numerical_gradient_array(forward, p, dout), grads[k]) < TOL


def test_first_layer_gradient_is_exact_including_the_embedding_rows():
    """W1 is the furthest from the output, so an error anywhere in the backward pass reaches its gradient.

    Its last emb_dim rows multiply the time embedding e, concatenated to x: they get gradient too and
    must match autograd as well. TOL is far below the relative error of about 0.005 that a 1 % mistake gives.
    """
    rng = np.random.default_rng(4)
    model = DenoiserMLP(2, 4, 2, 4, activation="silu", T=10, seed=4)
    for p in model.params.values():      # non-zero biases and a last layer of normal size
        p += 0.3 * rng.standard_normal(p.shape)
    x, t, dout = rng.standard_normal((3, 2)), rng.integers(1, 11, 3), rng.standard_normal((3, 2))
    grads = model.backward(dout, model.forward(x, t)[1])
    ref = nh.autograd_gradients(lambda x, **params: torch_denoiser(model, x, t, params), {"x": x, **model.params},
                                dout=dout)["W1"]
    assert grads["W1"].shape == ref.shape == (model.data_dim + model.emb_dim, model.hidden)
    data_rows, emb_rows = slice(None, model.data_dim), slice(model.data_dim, None)
    assert np.abs(ref[emb_rows]).max() > 1e-3        # the embedding rows do receive gradient
    assert nh.rel_error(grads["W1"][data_rows], ref[data_rows]) < TOL
    assert nh.rel_error(grads["W1"][emb_rows], ref[emb_rows]) < TOL


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (16, 2), (7, 8)])
def test_eps_mse_loss_matches_autograd(shape):
    rng = np.random.default_rng(sum(shape))
    eps_hat, eps = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, deps_hat = eps_mse_loss(eps_hat, eps)
    assert abs(loss - F.mse_loss(torch.from_numpy(eps_hat), torch.from_numpy(eps)).item()) < 1e-12
    ref = nh.autograd_gradients(lambda eps_hat, eps: F.mse_loss(eps_hat, eps), {"eps_hat": eps_hat, "eps": eps},
                                wrt=["eps_hat"])
    assert nh.rel_error(deps_hat, ref["eps_hat"]) < TOL


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("n, T", [(1, 5), (6, 20), (13, 100)])
def test_denoiser_loss_matches_autograd(kind, n, T):
    rng = np.random.default_rng(n + T)
    schedule = NoiseSchedule(T, kind)
    model = DenoiserMLP(2, 6, 2, 4, activation="silu", T=T, seed=n)
    x0, t, eps = rng.standard_normal((n, 2)), rng.integers(1, T + 1, n), rng.standard_normal((n, 2))
    loss, grads = model.loss(x0, t, eps, schedule)
    assert set(grads) == set(model.params)

    def torch_loss(x0, eps, **params):
        a_bar = torch.from_numpy(schedule.alpha_bars[t - 1])[:, None]
        x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * eps
        return ((torch_denoiser(model, x_t, t, params) - eps) ** 2).mean()

    ref = nh.autograd_gradients(torch_loss, {"x0": x0, "eps": eps, **model.params}, wrt=list(model.params))
    tensors = {k: torch.from_numpy(v) for k, v in model.params.items()}
    assert abs(loss - torch_loss(torch.from_numpy(x0), torch.from_numpy(eps), **tensors).item()) < 1e-12
    for k in model.params:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("T", [1, 10, 1000])
def test_schedule_is_consistent(kind, T):
    s = NoiseSchedule(T, kind)
    assert s.betas.shape == (T,) and np.all((s.betas > 0) & (s.betas <= 0.999))
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - s.betas))
    assert np.all(np.diff(s.alpha_bars) < 0) or T == 1
    np.testing.assert_allclose(s.posterior_variance[1:], s.betas[1:] * (1 - s.alpha_bars[:-1]) / (1 - s.alpha_bars[1:]))
    assert s.posterior_variance[0] == 0.0
    if kind == "cosine" and T >= 10:
        f = lambda u: math.cos((u / T + 0.008) / 1.008 * math.pi / 2) ** 2
        np.testing.assert_allclose(s.alpha_bars[: T // 2], [f(t) / f(0) for t in range(1, T // 2 + 1)], rtol=1e-10)
    if kind == "linear" and T == 1000:
        assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)


def test_q_sample_has_the_closed_form_moments():
    s = NoiseSchedule(50, "linear")
    rng = np.random.default_rng(0)
    x0 = np.tile([[1.5, -2.0]], (200_000, 1))
    t = np.full(len(x0), 20)
    x_t = q_sample(x0, t, rng.standard_normal(x0.shape), s)
    a_bar = s.alpha_bars[19]
    np.testing.assert_allclose(x_t.mean(0), math.sqrt(a_bar) * x0[0], atol=0.01)
    np.testing.assert_allclose(x_t.var(0), 1 - a_bar, rtol=0.02)
    images = rng.standard_normal((3, 1, 4, 4))
    noised = q_sample(images, np.array([1, 25, 50]), np.zeros_like(images), s)
    np.testing.assert_allclose(noised[2], math.sqrt(s.alpha_bars[-1]) * images[2])


def _random_predictor(seed):
    model = DenoiserMLP(2, 8, 2, 4, T=20, seed=seed)
    for p in model.params.values():
        p += 0.2 * np.random.default_rng(seed).standard_normal(p.shape)
    return model


@pytest.mark.parametrize("kind", SCHEDULES)
def test_ddim_with_eta_one_and_all_steps_is_ddpm(kind):
    s = NoiseSchedule(20, kind)
    model = _random_predictor(1)
    x_T = np.random.default_rng(2).standard_normal((30, 2))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    a = ddpm_sample(model, s, x_T, lambda x: rng_a.standard_normal(x.shape))
    b = ddim_sample(model, s, x_T, 20, eta=1.0, draw_noise=lambda x: rng_b.standard_normal(x.shape))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_is_deterministic_and_uses_the_requested_steps():
    s = NoiseSchedule(20, "linear")
    model = _random_predictor(2)
    calls = []
    predict = lambda x, t: (calls.append(t), model(x, t))[1]
    x_T = np.random.default_rng(4).standard_normal((10, 2))
    a = ddim_sample(predict, s, x_T, 5)
    assert calls == sampling_timesteps(20, 5) == [20, 15, 10, 6, 1]
    np.testing.assert_array_equal(a, ddim_sample(model, s, x_T, 5))
    clipped = ddim_sample(model, s, x_T, 1, clip_x0=(-0.5, 0.5))
    assert np.abs(clipped).max() <= 0.5 + 1e-12        # one step from T to 0 returns the clipped x0_hat


def test_samplers_work_on_torch_tensors():
    s = NoiseSchedule(10, "cosine")
    net = TinyUNet((8, 8, 8), T=10).eval()
    predict = torch_eps_predictor(net)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn((2, 1, 28, 28), generator=gen)
    out = ddpm_sample(predict, s, x_T, lambda x: torch.randn(x.shape, generator=gen))
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()
    out = ddim_sample(predict, s, x_T, 3, clip_x0=(-1.0, 1.0))
    assert out.shape == (2, 1, 28, 28) and out.abs().max() <= 1.0 + 1e-5


def test_energy_distance_matches_brute_force():
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.5
    d = lambda A, B: np.array([[np.linalg.norm(a - b) for b in B] for a in A])
    within = lambda A: d(A, A).sum() / (len(A) * (len(A) - 1))
    expected = 2 * d(X, Y).mean() - within(X) - within(Y)
    assert energy_distance(X, Y) == pytest.approx(expected, rel=1e-10)
    assert energy_distance(Y, X) == pytest.approx(expected, rel=1e-10)


def test_energy_distance_separates_distributions():
    rng = np.random.default_rng(6)
    same = energy_distance(rng.standard_normal((800, 2)), rng.standard_normal((800, 2)))
    shifted = energy_distance(rng.standard_normal((800, 2)), rng.standard_normal((800, 2)) + 0.5)
    assert abs(same) < 0.01 < shifted


def test_both_denoisers_read_chapter_8a_codes_of_t():
    """The NumPy denoiser and the U-Net embed t with chapter 8a's sinusoidal encoding, base 10 T."""
    t = np.array([1, 7, 50, 100])
    model = DenoiserMLP(2, 4, 1, 6, T=100)
    np.testing.assert_array_equal(model.embed(t), sinusoidal_positional_encoding(t, 6, base=1000.0))
    net = TinyUNet((8, 8, 8), T=100, emb_dim=16)
    np.testing.assert_allclose(net.time_codes[torch.from_numpy(t)].numpy(),
                               sinusoidal_positional_encoding(t, 16, base=1000.0), rtol=0, atol=1e-6)
    assert "time_codes" not in net.state_dict()          # derived from T, not saved with the weights


def test_tiny_unet_and_train_ddpm():
    torch.manual_seed(0)
    net = TinyUNet((8, 8, 8), T=10)
    X = torch.rand(16, 1, 28, 28) * 2 - 1
    losses, sampler = train_ddpm(net, X, NoiseSchedule(10), steps=2, batch_size=4, lr=1e-3, ema_decay=0.9)
    assert len(losses) == 2 and sampler is not net and not sampler.training
    assert net(X[:3], torch.tensor([1, 5, 10])).shape == (3, 1, 28, 28)



class _ZeroNet(torch.nn.Module):
    """Predicts zero noise whatever the input: each image's loss is then the mean of its eps squared."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return self.w * x


def test_min_snr_weighting_of_train_ddpm():
    schedule, X = NoiseSchedule(10, "cosine"), torch.zeros(8, 1, 4, 4)
    plain, _ = train_ddpm(_ZeroNet(), X, schedule, steps=1, batch_size=8, seed=3)
    huge, _ = train_ddpm(_ZeroNet(), X, schedule, steps=1, batch_size=8, seed=3, min_snr_gamma=float("inf"))
    weighted, _ = train_ddpm(_ZeroNet(), X, schedule, steps=1, batch_size=8, seed=3, min_snr_gamma=5.0)
    # the same batch, drawn the way train_ddpm draws it: weights min(SNR, 5) / SNR by image
    gen = torch.Generator().manual_seed(3)
    torch.randint(0, 8, (8,), generator=gen)
    t = torch.randint(1, 11, (8,), generator=gen)
    eps = torch.randn((8, 1, 4, 4), generator=gen)
    a_bar = torch.tensor(schedule.alpha_bars, dtype=torch.float32)[t - 1]
    snr = a_bar / (1 - a_bar)
    per_image = eps.pow(2).flatten(1).mean(1)
    assert plain[0] == pytest.approx(float(per_image.mean()), rel=1e-6)
    assert huge[0] == pytest.approx(plain[0], rel=1e-6)
    assert weighted[0] == pytest.approx(float((snr.clamp(max=5.0) / snr * per_image).mean()), rel=1e-6)
    assert weighted[0] < plain[0]

def test_train_denoiser_lowers_the_loss():
    data = np.random.default_rng(7).standard_normal((500, 2)) * [1.0, 0.1]
    model = DenoiserMLP(2, 32, 2, 8, activation="relu", T=20, seed=0)
    losses = train_denoiser(model, data, NoiseSchedule(20), steps=300, batch_size=64, lr=3e-3)
    assert np.mean(losses[-50:]) < 0.7 * np.mean(losses[:10])


@pytest.mark.parametrize("call, message", [
    (lambda: NoiseSchedule(0), "T must be an integer"),
    (lambda: NoiseSchedule(10, "quadratic"), "unknown kind"),
    (lambda: q_sample(np.zeros((2, 2)), np.array([0, 3]), np.zeros((2, 2)), NoiseSchedule(10)), "1..10"),
    (lambda: q_sample(np.zeros((2, 2)), np.array([1, 11]), np.zeros((2, 2)), NoiseSchedule(10)), "1..10"),
    (lambda: q_sample(np.zeros((2, 2)), np.array([1.0, 2.0]), np.zeros((2, 2)), NoiseSchedule(10)), "integers"),
    (lambda: q_sample(np.zeros((2, 2)), np.array([1, 2]), np.zeros((3, 2)), NoiseSchedule(10)), "same shape"),
    (lambda: sampling_timesteps(10, 0), "1..10"),
    (lambda: sampling_timesteps(10, 11), "1..10"),
    (lambda: ddim_sample(lambda x, t: x, NoiseSchedule(10), np.zeros((2, 2)), 5, eta=1.0), "draw_noise"),
    (lambda: energy_distance(np.zeros((5, 2)), np.zeros((5, 3))), "two samples"),
    (lambda: DenoiserMLP(2, 4, 1, 5).embed(np.arange(3)), "even"),
    (lambda: DenoiserMLP(2, 4, 1, 4).forward(np.zeros((3, 3)), np.ones(3, int)), "shape"),
    (lambda: DenoiserMLP(2, 4, 1, 4, activation="swish"), "unknown activation"),
    (lambda: eps_mse_loss(np.zeros((2, 2)), np.zeros((2, 3))), "differ in shape"),
    (lambda: TinyUNet((8, 8, 8), T=10)(torch.zeros(2, 1, 32, 32), torch.ones(2, dtype=torch.long)), "28, 28"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


class ConfidentByBrightness(torch.nn.Module):
    """A stand-in judge with known answers: the class is the image's mean brightness in tenths, and
    it is confident (p = 0.999) only for images brighter than 0.45."""

    def forward(self, x):
        brightness = x.mean(dim=(1, 2, 3))
        logits = torch.zeros(len(x), 10)
        strength = torch.where(brightness > 0.45, 10.0, 1.0)
        logits[torch.arange(len(x)), (brightness * 10).long().clamp(0, 9)] = strength
        return logits


def test_the_judge_scores_generated_digits_as_13c_reports_them():
    # 13c scores NumPy sample sets (N, 1, 28, 28) in [0, 1] with 13b's score_generated: the confident
    # share, the confident samples per class, and how many classes they cover
    levels = np.array([0.05, 0.15, 0.25, 0.55, 0.55, 0.65, 0.95, 0.95], dtype=np.float32)
    images = np.broadcast_to(levels[:, None, None, None], (8, 1, 28, 28)).copy()
    scores = score_generated(ConfidentByBrightness(), images)
    assert scores["confident"] == 5 / 8
    assert list(scores["confident_histogram"]) == [0, 0, 0, 0, 0, 2, 1, 0, 0, 2]
    assert scores["classes"] == 3 == int((scores["confident_histogram"] > 0).sum())
    assert scores["histogram"].sum() == 8 and scores["confident_histogram"].sum() == 5


def test_the_judge_refuses_images_that_are_not_mnist_shaped():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        score_generated(ConfidentByBrightness(), np.zeros((8, 28, 28), dtype=np.float32))
