"""NumPy GAN blocks of notebooks/13b_gan.ipynb (nndl_helpers.chapters.ch13b) against torch.autograd, and the helpers' API."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch04a import MLP
from nndl_helpers.chapters.ch13b import GENERATOR_LOSSES, NumpyGAN, discriminator_loss, gan_train_step, generator_loss, minibatch_std_backward, minibatch_std_forward, mode_coverage, ring_centres, ring_density, sample_ring
from nndl_helpers.chapters.ch13b_torch import class_probabilities, dcgan_discriminator, dcgan_generator, score_generated, train_digit_judge
from nndl_helpers.chapters.ch07a import Adam

TOL = 1e-6
TORCH_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "leaky_relu": F.leaky_relu, "elu": F.elu,
                     "sigmoid": torch.sigmoid}


def torch_mlp(params, x, activation):
    num_layers = len(params) // 2
    for l in range(1, num_layers + 1):
        x = x @ params[f"W{l}"] + params[f"b{l}"]
        if l < num_layers:
            x = TORCH_ACTIVATIONS[activation](x)
    return x


def torch_minibatch_std(x, eps=1e-8):
    std = torch.sqrt(x.var(dim=0, unbiased=False) + eps)
    return torch.cat([x, std.mean().expand(len(x), 1)], dim=1)


@pytest.mark.parametrize("n_real,n_fake", [(1, 1), (5, 7), (64, 3)])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_discriminator_loss_matches_autograd(n_real, n_fake, scale):
    rng = np.random.default_rng(n_real + n_fake)
    real, fake = scale * rng.standard_normal(n_real), scale * rng.standard_normal(n_fake)
    loss, d_real, d_fake = discriminator_loss(real, fake)

    def torch_loss(real, fake):
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    ref = nh.autograd_gradients(torch_loss, {"real": real, "fake": fake})
    assert loss == pytest.approx(torch_loss(torch.from_numpy(real), torch.from_numpy(fake)).item(), rel=1e-10)
    assert nh.rel_error(d_real, ref["real"]) < TOL and nh.rel_error(d_fake, ref["fake"]) < TOL


@pytest.mark.parametrize("kind", GENERATOR_LOSSES)
@pytest.mark.parametrize("n", [1, 6, 33])
def test_generator_loss_matches_autograd(kind, n):
    fake = 4 * np.random.default_rng(n).standard_normal(n)
    loss, d_fake = generator_loss(fake, kind)

    def torch_loss(fake):
        return F.softplus(-fake).mean() if kind == "non_saturating" else -F.softplus(fake).mean()

    ref = nh.autograd_gradients(torch_loss, {"fake": fake})
    assert loss == pytest.approx(torch_loss(torch.from_numpy(fake)).item(), rel=1e-10)
    assert nh.rel_error(d_fake, ref["fake"]) < TOL


def test_generator_losses_saturate_as_taught():
    """At D(G(z)) ~ 0 the saturating gradient vanishes and the non-saturating one does not."""
    fake = np.full(4, -12.0)
    assert np.abs(generator_loss(fake, "saturating")[1]).max() < 1e-5
    assert np.abs(generator_loss(fake, "non_saturating")[1]).min() > 0.2


def test_losses_are_stable_for_huge_logits():
    huge = np.array([1e4, -1e4, 800.0])
    loss, d_real, d_fake = discriminator_loss(huge, -huge)
    assert np.isfinite(loss) and np.isfinite(d_real).all() and np.isfinite(d_fake).all()
    for kind in GENERATOR_LOSSES:
        loss, d_fake = generator_loss(huge, kind)
        assert np.isfinite(loss) and np.isfinite(d_fake).all()


def test_unknown_generator_loss_is_refused():
    with pytest.raises(ValueError, match="non_saturating"):
        generator_loss(np.zeros(3), kind="wasserstein")


@pytest.mark.parametrize("sizes", [[3, 2], [2, 5, 1], [4, 7, 6, 3], [1, 3, 3, 3, 2]])
@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
def test_the_players_input_gradient_matches_autograd(sizes, activation):
    """The GAN trains G through D's input gradient, chapter 4's MLP.backward(...)["x"]: checked here for its use."""
    rng = np.random.default_rng(len(sizes))
    mlp = MLP(sizes, activation, output="linear", seed=len(sizes))
    x = rng.standard_normal((5, sizes[0]))
    dout = rng.standard_normal((5, sizes[-1]))
    out, cache = mlp.forward(x)
    np.testing.assert_allclose(out, torch_mlp({k: torch.from_numpy(v) for k, v in mlp.params.items()},
                                              torch.from_numpy(x), activation).numpy(), rtol=1e-12, atol=1e-12)
    grads = mlp.backward(dout, cache)
    ref = nh.autograd_gradients(lambda x, **p: torch_mlp(p, x, activation), {"x": x, **mlp.params}, dout=dout)
    assert set(grads) == {"x", *mlp.params}
    for k in grads:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k


@pytest.mark.parametrize("shape", [(2, 1), (3, 2), (7, 5), (64, 2)])
def test_minibatch_std_backward_matches_autograd(shape):
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape) * rng.uniform(0.1, 3, size=shape[1])
    dout = rng.standard_normal((shape[0], shape[1] + 1))
    out, cache = minibatch_std_forward(x)
    assert out.shape == (shape[0], shape[1] + 1)
    np.testing.assert_allclose(out[:, -1], np.sqrt(x.var(axis=0) + 1e-8).mean())
    ref = nh.autograd_gradients(torch_minibatch_std, {"x": x}, dout=dout)
    assert nh.rel_error(minibatch_std_backward(dout, cache), ref["x"]) < TOL


def test_minibatch_std_needs_two_samples():
    with pytest.raises(ValueError, match="N >= 2"):
        minibatch_std_forward(np.zeros((1, 2)))


def torch_gan_losses(gan, x_real, z, G, D, kind):
    def logits(x):
        return torch_mlp(D, torch_minibatch_std(x) if gan.minibatch_std else x, gan.activation)[:, 0]
    real, fake = logits(x_real), logits(torch_mlp(G, z, gan.activation))
    d_loss = F.softplus(-real).mean() + F.softplus(fake).mean()
    g_loss = F.softplus(-fake).mean() if kind == "non_saturating" else -F.softplus(fake).mean()
    return d_loss, g_loss


@pytest.mark.parametrize("z_dim,data_dim,hidden,depth", [(1, 2, 3, 1), (3, 2, 5, 2), (4, 3, 6, 3)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("mbstd", [False, True])
@pytest.mark.parametrize("kind", GENERATOR_LOSSES)
def test_gan_gradients_match_autograd(z_dim, data_dim, hidden, depth, activation, mbstd, kind):
    seed = z_dim + 10 * depth
    rng = np.random.default_rng(seed)
    gan = NumpyGAN(z_dim, data_dim, hidden, depth, activation, minibatch_std=mbstd, seed=seed, dtype=np.float64)
    x_real, z = rng.standard_normal((7, data_dim)), rng.standard_normal((5, z_dim))
    d_loss, d_grads = gan.discriminator_loss(x_real, z)
    g_loss, g_grads = gan.generator_loss(z, kind)
    tensors = {k: torch.from_numpy(v).requires_grad_() for k, v in
               {**{f"D_{k}": p for k, p in gan.D.params.items()}, **{f"G_{k}": p for k, p in gan.G.params.items()}}.items()}
    D = {k[2:]: v for k, v in tensors.items() if k.startswith("D_")}
    G = {k[2:]: v for k, v in tensors.items() if k.startswith("G_")}
    d_ref, g_ref = torch_gan_losses(gan, torch.from_numpy(x_real), torch.from_numpy(z), G, D, kind)
    assert set(d_grads) == set(gan.D.params) and set(g_grads) == set(gan.G.params)
    assert d_loss == pytest.approx(d_ref.item(), rel=1e-10)
    assert g_loss == pytest.approx(g_ref.item(), rel=1e-10)
    d_autograd = torch.autograd.grad(d_ref, list(D.values()), retain_graph=True)
    g_autograd = torch.autograd.grad(g_ref, list(G.values()))
    for k, ref in zip(D, d_autograd):
        assert nh.rel_error(d_grads[k], ref.numpy()) < TOL, ("D", k)
    for k, ref in zip(G, g_autograd):
        assert nh.rel_error(g_grads[k], ref.numpy()) < TOL, ("G", k)


def test_generator_gradient_checked_by_finite_differences():
    """The gradient that flows from D's output back into G, against centred differences."""
    rng = np.random.default_rng(0)
    gan = NumpyGAN(z_dim=2, hidden=4, depth=2, activation="tanh", minibatch_std=True, seed=5, dtype=np.float64)
    z = rng.standard_normal((6, 2))
    _, grads = gan.generator_loss(z)
    for k, p in gan.G.params.items():
        assert nh.rel_error(nh.numerical_gradient(lambda: gan.generator_loss(z)[0], p), grads[k]) < TOL, k


def test_minibatch_std_backward_passes_gradient_through_the_shared_column():
    """Gradient that reaches x only through the appended column m = mean_j std_n(x[n, j]).

    With dout zero on the copied columns, dx is exactly the shared-column term: a backward that
    dropped it would return zeros, and one that mis-scaled it would miss autograd and centred differences.
    """
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2))
    out, cache = minibatch_std_forward(x)
    dout = np.zeros_like(out)
    dout[:, -1] = rng.standard_normal(len(x))
    dx = minibatch_std_backward(dout, cache)
    ref = nh.autograd_gradients(torch_minibatch_std, {"x": x}, dout=dout)["x"]
    assert np.abs(ref).max() > 1e-2          # the term is not negligible here, so the check below has teeth
    assert nh.rel_error(dx, ref) < TOL
    num = nh.numerical_gradient_array(lambda: minibatch_std_forward(x)[0], x, dout)
    assert nh.rel_error(dx, num) < 1e-7


def test_gan_refuses_wrong_shapes():
    gan = NumpyGAN(z_dim=2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        gan.generate(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="x_real"):
        gan.discriminator_loss(np.zeros((3, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x_fake"):
        gan.discriminator_loss_on_samples(np.zeros((3, 2)), np.zeros((3, 3)))


def test_gan_train_step_updates_both_players():
    rng = np.random.default_rng(0)
    gan = NumpyGAN(seed=0)
    d_before, g_before = gan.D.params["W1"].copy(), gan.G.params["W1"].copy()
    x_real = sample_ring(32, rng)[0]
    z_d, z_g = rng.standard_normal((32, 2)), rng.standard_normal((32, 2))
    d_loss, g_loss = gan_train_step(gan, x_real, z_d, z_g, Adam(1e-3), Adam(1e-3))
    assert np.isfinite(d_loss) and np.isfinite(g_loss)
    assert not np.array_equal(gan.D.params["W1"], d_before) and not np.array_equal(gan.G.params["W1"], g_before)


def test_ring_and_mode_coverage():
    rng = np.random.default_rng(0)
    x, mode = sample_ring(4000, rng)
    assert x.shape == (4000, 2) and x.dtype == np.float32 and set(mode) == set(range(8))
    modes, quality, counts = mode_coverage(x)
    assert modes == 8 and quality > 0.97 and counts.sum() == round(quality * 4000)
    # all samples on one mode: 1 mode covered
    one = np.repeat(ring_centres()[:1], 100, axis=0)
    assert mode_coverage(one)[:2] == (1, 1.0)
    # samples far from the ring are not high quality
    assert mode_coverage(np.zeros((50, 2)))[:2] == (0, 0.0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        mode_coverage(np.zeros((5, 3)))


def test_ring_density_integrates_to_one():
    grid_1d = np.linspace(-3, 3, 301)
    grid = np.stack(np.meshgrid(grid_1d, grid_1d), axis=-1).reshape(-1, 2)
    cell = (grid_1d[1] - grid_1d[0]) ** 2
    assert ring_density(grid).sum() * cell == pytest.approx(1.0, abs=1e-3)


def test_dcgan_shapes():
    torch.manual_seed(0)
    G, D = dcgan_generator(z_dim=8, channels=4), dcgan_discriminator(channels=4)
    images = G(torch.randn(5, 8))
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert D(images).shape == (5, 1)


class BrightIsSeven(torch.nn.Module):
    """A judge with known answers: bright images are a confident 7 (p = 0.99995), dark ones an
    unsure 2 (p = e / (e + 9) = 0.23)."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        bright = x.mean(dim=(1, 2, 3)) > 0.5
        logits[bright, 7] = 12.0
        logits[~bright, 2] = 1.0
        return logits


def known_images():
    images = torch.zeros(6, 1, 28, 28)
    images[:4] = 0.9                     # four bright, two dark
    return images


def test_score_generated_on_a_classifier_with_known_output():
    scores = score_generated(BrightIsSeven(), known_images())
    assert scores["confident"] == pytest.approx(4 / 6)
    assert scores["classes"] == 1                                    # only the 7s are confident
    assert list(scores["histogram"]) == [0, 0, 2, 0, 0, 0, 0, 4, 0, 0]
    assert list(scores["confident_histogram"]) == [0, 0, 0, 0, 0, 0, 0, 4, 0, 0]
    assert scores["entropy"] == pytest.approx(-(1 / 3) * np.log(1 / 3) - (2 / 3) * np.log(2 / 3))
    # a lower bar admits the unsure 2s too; a NumPy array and small batches give the same verdict
    loose = score_generated(BrightIsSeven(), known_images().numpy(), confidence=0.2, batch_size=4)
    assert loose["confident"] == 1.0 and loose["classes"] == 2
    assert list(loose["confident_histogram"]) == [0, 0, 2, 0, 0, 0, 0, 4, 0, 0]
    probs = class_probabilities(BrightIsSeven(), known_images(), batch_size=5)
    assert probs.shape == (6, 10) and torch.allclose(probs.sum(1), torch.ones(6))
    assert probs[0, 7] > 0.9999 and probs[5, 2] == pytest.approx(np.e / (np.e + 9))


def test_score_generated_of_a_single_class():
    scores = score_generated(BrightIsSeven(), known_images()[:4])
    assert scores["confident"] == 1.0 and scores["classes"] == 1 and scores["entropy"] == 0.0


def test_train_digit_judge_learns_is_seeded_and_leaves_the_random_state_alone():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=128)
    images = 0.1 * rng.random((128, 1, 28, 28)).astype(np.float32)
    images[labels == 1, :, :14] += 0.8          # class 1: bright top half; class 0: dark
    state = torch.get_rng_state()
    judge = train_digit_judge(images, labels, epochs=2, batch_size=16, lr=3e-3, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert not judge.training
    accuracy = (class_probabilities(judge, images).argmax(1).numpy() == labels).mean()
    assert accuracy > 0.95, accuracy
    again = train_digit_judge(torch.as_tensor(images), labels, epochs=2, batch_size=16, lr=3e-3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(judge.state_dict().values(), again.state_dict().values()))
    other = train_digit_judge(images, labels, epochs=1, batch_size=32, lr=3e-3, seed=2)
    assert not torch.equal(judge[0].weight, other[0].weight)


@pytest.mark.parametrize("call, message", [
    (lambda: score_generated(BrightIsSeven(), torch.zeros(2, 28, 28)), r"score_generated.*\(N, 1, 28, 28\)"),
    (lambda: score_generated(BrightIsSeven(), torch.zeros(2, 3, 28, 28)), r"\(N, 1, 28, 28\)"),
    (lambda: score_generated(BrightIsSeven(), 255 * known_images()), r"\[0, 1\]"),
    (lambda: score_generated(BrightIsSeven(), np.zeros((0, 1, 28, 28))), "N >= 1"),
    (lambda: score_generated(BrightIsSeven(), known_images(), num_classes=5), "10 classes, expected 5"),
    (lambda: class_probabilities(BrightIsSeven(), np.zeros((2, 1, 32, 32))), "class_probabilities"),
    (lambda: train_digit_judge(np.zeros((4, 1, 28, 28)), np.zeros(3)), "one label in 0..9 per image"),
    (lambda: train_digit_judge(np.zeros((2, 1, 28, 28)), np.array([0, 10])), "one label in 0..9 per image"),
    (lambda: train_digit_judge(np.zeros((2, 784)), np.array([0, 1])), "train_digit_judge"),
])
def test_judge_refuses_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
