"""Input gradients, saliency, attacks and Grad-CAM of notebooks/16a_understanding_and_adversarial.ipynb
(nndl_helpers.chapters.ch16a / ch16a_torch) against torch.autograd, and their input errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch05a import LeNet5
from nndl_helpers.chapters.ch05a_torch import copy_lenet_params, lenet5_torch
from nndl_helpers.chapters.ch16a import (check_epsilon, fgsm, lenet5_loss_input_gradient,
                                         lenet5_saliency, pgd)
from nndl_helpers.chapters.ch16a_torch import (class_model_images, fgsm_torch, gaussian_blur, grad_cam,
                                               input_gradient_torch, pgd_torch, place_cam)

TOL = 1e-6


def _lenet64(seed):
    """A float64 LeNet5 with non-zero biases, and its PyTorch twin with the same weights."""
    model = LeNet5(seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 10)
    for k in model.params:
        if k.startswith("b"):
            model.params[k] = 0.1 * rng.standard_normal(model.params[k].shape)
    return model, copy_lenet_params(model.params, lenet5_torch().double())


def _images(n, seed):
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 28, 28))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_lenet5_backward_input_gradient_matches_autograd(n, seed):
    model, twin = _lenet64(seed)
    x = _images(n, seed)
    dscores = np.random.default_rng(seed + 5).standard_normal((n, 10))
    scores, cache = model.forward(x)
    grads = model.backward(dscores, cache, need_dx=True)
    dx = grads["x"]
    assert "x" not in model.backward(dscores, cache)      # training skips the pixels' gradient
    assert all(np.array_equal(grads[k], g) for k, g in model.backward(dscores, cache).items())
    x_t = torch.tensor(x, requires_grad=True)
    out = twin(x_t)
    np.testing.assert_allclose(scores, out.detach().numpy(), rtol=1e-10, atol=1e-10)
    out.backward(torch.from_numpy(dscores))
    assert dx.shape == x.shape
    assert nh.rel_error(dx, x_t.grad.numpy()) < TOL
    assert np.abs(dx - x_t.grad.numpy()).max() < TOL


def test_lenet5_loss_input_gradient_leaves_parameter_gradients_alone():
    model, _ = _lenet64(0)
    x, y = _images(2, 0), np.array([3, 7])
    before = {k: v.copy() for k, v in model.params.items()}
    loss, dx = lenet5_loss_input_gradient(model, x, y)
    assert all(np.array_equal(before[k], model.params[k]) for k in before)
    loss_ref, grads = model.loss(x, y)
    assert loss == pytest.approx(loss_ref)


def test_loss_input_gradient_and_saliency_match_autograd():
    model, twin = _lenet64(2)
    x, y = _images(4, 2), np.array([0, 1, 2, 9])
    loss, dx = lenet5_loss_input_gradient(model, x, y)
    ref = nh.autograd_gradients(lambda x: F.cross_entropy(twin(x), torch.as_tensor(y)), {"x": x})
    assert nh.rel_error(dx, ref["x"]) < TOL
    sal = lenet5_saliency(model, x, y)
    x_t = torch.tensor(x, requires_grad=True)
    twin(x_t).gather(1, torch.as_tensor(y).view(-1, 1)).sum().backward()
    assert sal.shape == (4, 28, 28)
    assert nh.rel_error(sal, x_t.grad.abs().numpy()[:, 0]) < TOL


def test_fgsm_and_pgd_agree_with_the_torch_versions():
    model, twin = _lenet64(3)
    x, y = _images(3, 3), np.array([1, 4, 8])
    grad = lambda xx, yy: lenet5_loss_input_gradient(model, xx, yy)[1]
    for eps in (0.0, 0.05, 0.2):
        x_np = fgsm(x, y, eps, grad)
        x_t = fgsm_torch(twin, torch.from_numpy(x), torch.from_numpy(y), eps).numpy()
        np.testing.assert_allclose(x_np, x_t, atol=1e-12)
        np.testing.assert_allclose(x_np, np.clip(x + eps * np.sign(grad(x, y)), 0, 1))
        p_np = pgd(x, y, eps, grad, steps=5)
        p_t = pgd_torch(twin, torch.from_numpy(x), torch.from_numpy(y), eps, steps=5).numpy()
        np.testing.assert_allclose(p_np, p_t, atol=1e-12)
        assert np.abs(p_np - x).max() <= eps + 1e-12 and p_np.min() >= 0 and p_np.max() <= 1


def test_pgd_random_start_stays_in_the_ball_and_raises_the_loss():
    model, _ = _lenet64(4)
    x, y = _images(6, 4), np.arange(6)
    grad = lambda xx, yy: lenet5_loss_input_gradient(model, xx, yy)[1]
    x_adv = pgd(x, y, 0.1, grad, steps=8, rng=np.random.default_rng(0))
    assert x_adv.dtype == x.dtype and np.abs(x_adv - x).max() <= 0.1 + 1e-12
    assert lenet5_loss_input_gradient(model, x_adv, y)[0] > lenet5_loss_input_gradient(model, x, y)[0]
    gen = torch.Generator().manual_seed(0)
    _, twin = _lenet64(4)
    xt = pgd_torch(twin, torch.from_numpy(x), torch.from_numpy(y), 0.1, steps=3, random_start=True, generator=gen)
    assert (xt - torch.from_numpy(x)).abs().max() <= 0.1 + 1e-12 and xt.min() >= 0 and xt.max() <= 1


def test_input_gradient_torch_does_not_touch_parameter_grads():
    _, twin = _lenet64(5)
    x, y = torch.from_numpy(_images(2, 5)), torch.tensor([1, 2])
    g = input_gradient_torch(twin, x, y)
    assert g.shape == x.shape and all(p.grad is None for p in twin.parameters())


def _grad_cam_reference(model, x, classes):
    feats = model[:5](x)                                  # conv1 .. the ReLU after conv 2
    feats.retain_grad()
    scores = model[5:](feats)
    scores.gather(1, classes.view(-1, 1)).sum().backward()
    cam = F.relu((feats.grad.mean(dim=(2, 3), keepdim=True) * feats).sum(1))
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def test_grad_cam_matches_a_split_model_reference():
    _, twin = _lenet64(6)
    x, classes = torch.from_numpy(_images(3, 6)), torch.tensor([2, 5, 7])
    cam = grad_cam(twin, twin[4], x, classes)
    ref = _grad_cam_reference(twin, x.clone(), classes)
    assert cam.shape == (3, 10, 10) and cam.min() >= 0 and cam.max() <= 1
    assert nh.rel_error(cam.numpy(), ref.detach().numpy()) < TOL
    placed = place_cam(cam, stride=2, margin=4)
    assert placed.shape == (3, 28, 28) and placed[:, :4].abs().max() == 0


def test_gaussian_blur_and_class_models():
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    blurred = gaussian_blur(x, 0.7)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    const = torch.full((1, 1, 6, 6), 0.3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(const, 1.0), const)
    _, twin = _lenet64(7)
    twin = twin.float()
    images = class_model_images(twin, torch.tensor([3, 8]), steps=20)
    assert images.shape == (2, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "big", None])
def test_bad_epsilon_is_rejected(bad):
    with pytest.raises(ValueError, match="epsilon"):
        check_epsilon(bad)
    with pytest.raises(ValueError, match="epsilon"):
        fgsm(_images(1, 0), np.array([1]), bad, lambda x, y: x)


def test_bad_images_and_arguments_are_rejected():
    grad = lambda x, y: x
    with pytest.raises(ValueError, match="4-D"):
        fgsm(_images(2, 0)[:, 0], np.array([1, 2]), 0.1, grad)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        pgd(255 * _images(2, 0), np.array([1, 2]), 0.1, grad)
    with pytest.raises(ValueError, match="steps"):
        pgd(_images(2, 0), np.array([1, 2]), 0.1, grad, steps=0)
    with pytest.raises(ValueError, match="4-D"):
        pgd_torch(lenet5_torch(), torch.rand(2, 28, 28), torch.tensor([1, 2]), 0.1)
    model, _ = _lenet64(0)
    with pytest.raises(ValueError, match="classes"):
        lenet5_saliency(model, _images(2, 0), np.array([3, 10]))
    with pytest.raises(ValueError, match="layer"):
        grad_cam(lenet5_torch(), torch.nn.ReLU(), torch.rand(1, 1, 28, 28), torch.tensor([0]))
