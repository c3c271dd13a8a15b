"""PyTorch code taught in notebooks/16a_understanding_and_adversarial.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
from nndl_helpers.chapters.ch16a import check_epsilon


import torch
import torch.nn.functional as F

from nndl_helpers.chapters.ch05a import check_images


def grad_cam(model, layer, x, classes):
    """Grad-CAM maps (N, h, w) in [0, 1] of `layer` (a module inside `model`) for class classes[n] of image x[n].

    x (N, C, H, W) on the model's device, classes (N,) a long tensor. The layer's output A (N, K, h, w) is caught by
    a forward hook; alpha_k = the spatial mean of d s_c / d A_k; map = relu(sum_k alpha_k A_k), on the layer's grid.
    """
    check_images(x, "grad_cam: x")
    caught = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: caught.update(A=output))
    try:
        scores = model(x)
    finally:
        handle.remove()
    if "A" not in caught:
        raise ValueError("grad_cam: `layer` was not called by model(x); pass one of the model's own modules")
    A = caught["A"]
    (dA,) = torch.autograd.grad(scores.gather(1, classes.view(-1, 1)).sum(), A)   # each image's own s_c
    alpha = dA.mean(dim=(2, 3), keepdim=True)                    # (N, K, 1, 1)
    cam = F.relu((alpha * A).sum(dim=1))                           # (N, h, w)
    return (cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)).detach()


def place_cam(cam, stride, margin):
    """Maps (N, h, w) on a layer's grid -> image pixels: bilinear upsampling by `stride`, zero padding by `margin`."""
    up = F.interpolate(cam[:, None], scale_factor=stride, mode="bilinear", align_corners=False)[:, 0]
    return F.pad(up, (margin, margin, margin, margin))


def gaussian_blur(x, sigma):
    """Blur images x (N, C, H, W) with a Gaussian of standard deviation sigma pixels (a 5x5 kernel, edges replicated)."""
    t = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    g = torch.exp(-t**2 / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum()**2).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def class_model_images(model, classes, shape=(1, 28, 28), steps=200, lr=0.05, l2=0.01, blur_sigma=0.5,
                       blur_every=10):
    """Gradient ascent on the input: images (N, *shape) in [0, 1] that maximise s_c - l2 ||x||^2 for each class c.

    classes: (N,) long tensor on the model's device. Adam on the pixels, clipped to [0, 1] after each step and
    blurred every blur_every steps (0: never); the model's weights are not changed.
    """
    x = torch.full((len(classes), *shape), 0.5, device=classes.device, requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr)
    for step in range(1, steps + 1):
        objective = model(x).gather(1, classes.view(-1, 1)).sum() - l2 * (x ** 2).sum()
        opt.zero_grad()
        (-objective).backward()                      # ascent = descent on the negative
        opt.step()
        with torch.no_grad():
            if blur_every and step % blur_every == 0:
                x.copy_(gaussian_blur(x, blur_sigma))
            x.clamp_(0, 1)
    return x.detach()


def input_gradient_torch(model, x, y):
    """d(mean cross-entropy)/dx for a PyTorch classifier, without touching its parameters' .grad."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return grad


def pgd_torch(model, x, y, epsilon, *, step_size=None, steps=10, random_start=False, generator=None):
    """pgd in PyTorch: x (N, C, H, W) in [0, 1] on the model's device, y (N,) labels; returns x_adv (detached).

    random_start draws the start uniformly in the ball with `generator` (a torch.Generator on x's device, or None).
    """
    check_images(x, "pgd_torch: x", value_range=(0, 1))
    eps = check_epsilon(epsilon)
    step = eps / 4 if step_size is None else check_epsilon(step_size, "step_size")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"pgd_torch: steps must be an integer >= 1, got {steps!r}")
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    x_adv = x.detach().clone()
    if random_start:
        noise = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        x_adv = torch.max(torch.min(x_adv + (2 * noise - 1) * eps, hi), lo)
    for _ in range(int(steps)):
        x_adv = x_adv + step * input_gradient_torch(model, x_adv, y).sign()
        x_adv = torch.max(torch.min(x_adv, hi), lo)
    return x_adv.detach()


def fgsm_torch(model, x, y, epsilon):
    """FGSM in PyTorch: one PGD step of size epsilon from x."""
    return pgd_torch(model, x, y, epsilon, step_size=epsilon, steps=1)
