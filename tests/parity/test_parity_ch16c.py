"""Detection losses of notebooks/16c_detection.ipynb (nndl_helpers.chapters.ch16c) against torch.autograd,
and the PyTorch detector's loss and shapes against the NumPy pieces."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch16c import detection_targets, focal_loss, make_anchors, smooth_l1_loss
from nndl_helpers.chapters.ch16c_torch import TinySSD, ssd_loss, torch_focal_loss, torch_smooth_l1

TOL = 1e-6


def reference_focal(logits, targets, alpha, gamma, norm):
    """The focal loss through torch's binary cross-entropy: -log p_t = BCE(logit, t)."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = torch.where(targets == 1, p, 1 - p)
    alpha_t = torch.where(targets == 1, alpha, 1 - alpha)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum() / norm


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (40, 10)])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (0.75, 1.0), (0.25, 3.5)])
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_focal_loss_matches_autograd(shape, alpha, gamma, scale):
    rng = np.random.default_rng(shape[0] + int(10 * gamma))
    logits = scale * rng.standard_normal(shape)
    targets = (rng.uniform(size=shape) < 0.3).astype(np.float64)
    norm = max(1, int(targets.sum()))
    loss, dlogits = focal_loss(logits, targets, alpha=alpha, gamma=gamma, normalizer=norm)
    ref = nh.autograd_gradients(lambda logits, targets: reference_focal(logits, targets, alpha, gamma, norm),
                                {"logits": logits, "targets": targets}, wrt=["logits"])
    ref_loss = reference_focal(torch.from_numpy(logits), torch.from_numpy(targets), alpha, gamma, norm).item()
    assert abs(loss - ref_loss) < 1e-10 * max(1.0, abs(ref_loss))
    assert nh.rel_error(dlogits, ref["logits"]) < TOL


def test_focal_loss_reduces_to_cross_entropy_and_rejects_bad_input():
    rng = np.random.default_rng(0)
    logits, targets = rng.standard_normal((6, 4)), (rng.uniform(size=(6, 4)) < 0.5).astype(float)
    loss = focal_loss(logits, targets, alpha=0.5, gamma=0.0)[0]
    bce = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(targets), reduction="sum") / 6
    assert loss == pytest.approx(0.5 * bce.item(), rel=1e-12)
    with pytest.raises(ValueError, match="0 or 1"):
        focal_loss(logits, targets * 0.5)
    with pytest.raises(ValueError, match=r"\(A, C\)"):
        focal_loss(logits, targets[:, :3])


@pytest.mark.parametrize("shape", [(1, 4), (7, 4), (30, 4)])
@pytest.mark.parametrize("beta", [1.0, 0.2, 3.0])
def test_smooth_l1_loss_matches_autograd(shape, beta):
    rng = np.random.default_rng(shape[0])
    pred, target = 2 * rng.standard_normal(shape), 2 * rng.standard_normal(shape)
    loss, dpred = smooth_l1_loss(pred, target, beta=beta, normalizer=3)

    def ref_fn(pred, target):
        return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum") / 3

    ref = nh.autograd_gradients(ref_fn, {"pred": pred, "target": target}, wrt=["pred"])
    assert abs(loss - ref_fn(torch.from_numpy(pred), torch.from_numpy(target)).item()) < 1e-10 * max(1.0, loss)
    assert nh.rel_error(dpred, ref["pred"]) < TOL
    with pytest.raises(ValueError, match="same shape"):
        smooth_l1_loss(pred, target[:, :3])


def test_torch_twins_and_ssd_loss_equal_the_numpy_losses():
    rng = np.random.default_rng(3)
    anchors = make_anchors((12, 12), 4, [9.0, 13.0], [0.6, 0.9])
    gt = np.array([[3, 4, 12, 18], [25, 20, 40, 39]], float)
    cls_t, box_t, matches = detection_targets(anchors, gt, [2, 7], 10)
    logits, deltas = rng.standard_normal(cls_t.shape), rng.standard_normal(box_t.shape)
    pos, valid = matches >= 0, matches != -2
    n_pos = pos.sum()
    want_cls = focal_loss(logits[valid], cls_t[valid], normalizer=n_pos)[0]
    want_box = smooth_l1_loss(deltas[pos], box_t[pos], normalizer=n_pos)[0]
    t = lambda a: torch.from_numpy(a)[None]   # noqa: E731 (a batch of one image)
    cls_loss, box_loss = ssd_loss(t(logits), t(deltas), t(cls_t), t(box_t), t(matches))
    assert cls_loss.item() == pytest.approx(want_cls, rel=1e-12) and box_loss.item() == pytest.approx(want_box, rel=1e-12)
    assert torch_focal_loss(torch.zeros(2, 3), torch.zeros(2, 3)).item() == pytest.approx(6 * 0.75 * 0.25 * np.log(2))
    assert torch_smooth_l1(torch.tensor([0.5, 3.0]), torch.zeros(2)).item() == pytest.approx(0.125 + 2.5)


def test_tiny_ssd_shapes_follow_the_anchor_layout():
    torch.manual_seed(0)
    model = TinySSD(num_anchors=6, num_classes=10, width=16).eval()
    cls, box = model(torch.zeros(2, 1, 48, 48))
    assert cls.shape == (2, 12 * 12 * 6, 10) and box.shape == (2, 12 * 12 * 6, 4)
    assert torch.allclose(torch.sigmoid(cls), torch.full_like(cls, 0.01), atol=0.05)   # the prior bias
