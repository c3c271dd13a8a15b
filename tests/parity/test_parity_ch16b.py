"""Parity tests for notebooks/16b_segmentation.ipynb (ch16b, ch16b_torch).

The NumPy transposed convolution (forward and backward, stride and padding) against F.conv_transpose2d and
torch.autograd in float64, its adjoint identity with chapter 5a's convolution, the whole NumpyFCN's gradients,
the segmentation metrics against scikit-learn's confusion matrix and a brute-force IoU, the U-Net's shapes
and a tiny training run, and the errors on bad input.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nndl_helpers as nh
from nndl_helpers.chapters.ch05a import conv2d_backward, conv2d_forward
from nndl_helpers.chapters.ch16b import (NumpyFCN, conv_transpose2d_backward, conv_transpose2d_forward,
                                         conv_transpose_output_size, dilate_hw, fcn_params, segmentation_scores)
from nndl_helpers.chapters.ch16b_torch import UNet, predict_masks, train_segmenter

TOL = 1e-6
# (N, C_in, C_out, H, W, K, stride, padding)
CASES = [(2, 3, 4, 5, 5, 3, 2, 1), (1, 1, 1, 1, 1, 1, 1, 0), (2, 2, 3, 4, 6, 4, 2, 1), (3, 2, 2, 3, 3, 3, 3, 2),
         (1, 3, 2, 6, 4, 5, 1, 2), (2, 4, 3, 3, 5, 2, 2, 0), (1, 2, 5, 2, 2, 4, 4, 3), (2, 1, 2, 7, 3, 3, 1, 0)]


def _torch_ref(x, W, b, dout, stride, padding):
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, W, b)]
    out = F.conv_transpose2d(*tensors, stride=stride, padding=padding)
    out.backward(torch.as_tensor(dout))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose2d_matches_torch(case):
    N, c_in, c_out, H, W_in, K, S, P = case
    rng = np.random.default_rng(sum(case))
    x, W, b = rng.standard_normal((N, c_in, H, W_in)), rng.standard_normal((c_in, c_out, K, K)), rng.standard_normal(c_out)
    out, cache = conv_transpose2d_forward(x, W, b, stride=S, padding=P)
    assert out.shape == (N, c_out, conv_transpose_output_size(H, K, S, P), conv_transpose_output_size(W_in, K, S, P))
    dout = rng.standard_normal(out.shape)
    ref_out, (rx, rW, rb) = _torch_ref(x, W, b, dout, S, P)
    assert np.abs(out - ref_out).max() < TOL
    dx, dW, db = conv_transpose2d_backward(dout, cache)
    assert rel_error_all((dx, dW, db), (rx, rW, rb)) < TOL
    assert np.abs(dx - rx).max() < TOL and np.abs(dW - rW).max() < TOL and np.abs(db - rb).max() < TOL


def rel_error_all(mine, theirs):
    return max(nh.rel_error(a, b) for a, b in zip(mine, theirs))


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    N, c_in, c_out, H, W_in, K, S, P = case
    rng = np.random.default_rng(100 + sum(case))
    x, W = rng.standard_normal((N, c_in, H, W_in)), rng.standard_normal((c_in, c_out, K, K))
    t_x = conv_transpose2d_forward(x, W, np.zeros(c_out), stride=S, padding=P)[0]
    z = rng.standard_normal(t_x.shape)
    conv_z, conv_cache = conv2d_forward(z, W, np.zeros(c_in), stride=S, padding=P)
    assert conv_z.shape == x.shape
    assert abs(np.sum(conv_z * x) - np.sum(z * t_x)) < 1e-9 * max(1.0, np.abs(conv_z * x).sum())
    np.testing.assert_allclose(conv2d_backward(x, conv_cache)[0], t_x, atol=1e-10)


def test_dilate_hw_inserts_zeros():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(dilate_hw(x, 3)[0, 0], [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 3]])
    assert dilate_hw(x, 1) is x


@pytest.mark.parametrize("channels,seed", [(1, 0), (2, 1), (3, 2)])
def test_numpy_fcn_gradients_match_autograd(channels, seed):
    rng = np.random.default_rng(seed)
    fcn = NumpyFCN(channels=channels, foreground_rate=0.2, seed=seed, dtype=np.float64)
    X = rng.uniform(size=(2, 1, 8, 12))
    mask = (rng.uniform(size=X.shape) < 0.3).astype(np.float64)
    loss, grads = fcn.loss(X, mask)

    def torch_loss(X, mask, W1, b1, W2, b2, W3, b3, W4, b4):
        a = F.max_pool2d(F.relu(F.conv2d(X, W1, b1, padding=1)), 2)
        a = F.max_pool2d(F.relu(F.conv2d(a, W2, b2, padding=1)), 2)
        a = F.relu(F.conv_transpose2d(a, W3, b3, stride=2, padding=1))
        return F.binary_cross_entropy_with_logits(F.conv_transpose2d(a, W4, b4, stride=2, padding=1), mask)

    inputs = {"X": X, "mask": mask, **fcn.params}
    ref = nh.autograd_gradients(torch_loss, inputs, wrt=list(fcn.params))
    assert abs(loss - torch_loss(**{k: torch.from_numpy(v) for k, v in inputs.items()}).item()) < 1e-10
    for k in fcn.params:
        assert nh.rel_error(grads[k], ref[k]) < TOL, k
    assert fcn(X).shape == X.shape


def test_fcn_params_shapes_and_prior():
    p = fcn_params(4, foreground_rate=0.25, seed=0)
    assert p["W3"].shape == (8, 4, 4, 4) and p["W4"].shape == (4, 1, 4, 4) and p["W1"].dtype == np.float32
    assert np.isclose(1 / (1 + np.exp(-p["b4"][0])), 0.25)


@pytest.mark.parametrize("seed", range(5))
def test_segmentation_scores_match_sklearn_and_brute_force(seed):
    from sklearn.metrics import confusion_matrix as sk_confusion, jaccard_score

    rng = np.random.default_rng(seed)
    K = 6
    truth = rng.integers(0, K - 1, size=(4, 9, 7))          # class K - 1 never in the truth
    guess = np.where(rng.uniform(size=truth.shape) < 0.5, truth, rng.integers(0, K - 1, size=truth.shape))
    s = segmentation_scores(truth, guess, K)
    np.testing.assert_array_equal(s["confusion"], sk_confusion(truth.ravel(), guess.ravel(), labels=range(K)))
    present = ~np.isnan(s["iou"])
    assert present.tolist() == [True] * (K - 1) + [False]
    sk_iou = jaccard_score(truth.ravel(), guess.ravel(), labels=range(K - 1), average=None)
    np.testing.assert_allclose(s["iou"][present], sk_iou)
    brute = [((truth == c) & (guess == c)).sum() / ((truth == c) | (guess == c)).sum() for c in range(K - 1)]
    assert np.isclose(s["miou"], np.mean(brute))
    assert np.isclose(s["pixel_accuracy"], np.mean(truth == guess))


def test_segmentation_scores_perfect_and_errors():
    m = np.array([[0, 1], [2, 2]])
    s = segmentation_scores(m, m, 4)
    assert s["miou"] == 1.0 and s["pixel_accuracy"] == 1.0 and np.isnan(s["iou"][3])
    with pytest.raises(ValueError, match="same shape"):
        segmentation_scores(m, m[:1], 4)
    with pytest.raises(ValueError, match="integer labels"):
        segmentation_scores(m, m.astype(np.float32), 4)
    with pytest.raises(ValueError, match="labels must lie"):
        segmentation_scores(m, m + 5, 4)


def test_conv_transpose2d_bad_input():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match="C_in=3"):
        conv_transpose2d_forward(x, np.zeros((4, 2, 3, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="padding"):
        conv_transpose2d_forward(x, np.zeros((3, 2, 3, 3)), np.zeros(2), stride=2, padding=3)
    with pytest.raises(ValueError, match="b has shape"):
        conv_transpose2d_forward(x, np.zeros((3, 2, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="4-D"):
        conv_transpose2d_forward(np.zeros((3, 4, 4)), np.zeros((3, 2, 3, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="multiples of 4"):
        NumpyFCN(2).forward(np.zeros((1, 1, 10, 12), np.float32))


def test_unet_shapes_errors_and_a_tiny_training_run():
    torch.manual_seed(0)
    net = UNet((4, 8, 8), num_classes=3)
    assert net(torch.zeros(2, 1, 16, 20)).shape == (2, 3, 16, 20)
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.zeros(1, 1, 18, 16))
    with pytest.raises(ValueError, match="channels|shape"):
        net(torch.zeros(1, 2, 16, 16))
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(16, 1, 8, 8)).astype(np.float32)
    masks = (X[:, 0] > 0.5).astype(np.int64) + (X[:, 0] > 0.8)       # 3 classes by brightness
    losses = train_segmenter(net, X, masks, epochs=15, batch_size=8, lr=1e-2, class_weights=[1.0, 1.0, 2.0])
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])
    pred, probs = predict_masks(net, X)
    assert pred.shape == masks.shape and pred.dtype == np.int64 and probs.shape == (16, 3, 8, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="int64 labels"):
        train_segmenter(net, X, masks.astype(np.int32), epochs=1)


def test_unet_deep_supervision():
    torch.manual_seed(0)
    net = UNet((4, 8, 8), num_classes=3, deep_supervision=True)
    x = torch.rand(2, 1, 16, 20)
    scores, aux = net(x, with_aux=True)
    assert scores.shape == aux.shape == (2, 3, 16, 20)
    torch.testing.assert_close(net(x), scores)                    # the aux head does not change the scores
    # aux = the bottleneck's 1x1-conv scores, bilinearly upsampled
    bottleneck = net.down[-1](F.max_pool2d(net.down[0](F.max_pool2d(net.stem(x), 2)), 2))
    expected = F.interpolate(F.conv2d(bottleneck, net.aux_head.weight, net.aux_head.bias), size=(16, 20),
                             mode="bilinear", align_corners=False)
    torch.testing.assert_close(aux, expected)
    with pytest.raises(ValueError, match="deep_supervision"):
        UNet((4, 8, 8), num_classes=3)(x, with_aux=True)
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(16, 1, 8, 8)).astype(np.float32)
    masks = (X[:, 0] > 0.5).astype(np.int64) + (X[:, 0] > 0.8)
    losses = train_segmenter(net, X, masks, epochs=15, batch_size=8, lr=1e-2, aux_weight=0.5)
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])
    assert predict_masks(net, X)[1].shape == (16, 3, 8, 8)


def test_unet_class_prior():
    prior = np.array([0.7, 0.2, 0.1])
    net = UNet((4, 8), num_classes=3, deep_supervision=True, class_prior=prior)
    for head in (net.head, net.aux_head):
        np.testing.assert_allclose(head.bias.detach().numpy(), np.log(prior), rtol=1e-6)
    with torch.no_grad():                     # with the weights at 0, the scores' softmax is the prior
        net.head.weight.zero_()
    probs = torch.softmax(net(torch.rand(2, 1, 8, 8)), dim=1)
    np.testing.assert_allclose(probs.detach().numpy(), np.broadcast_to(prior[None, :, None, None], (2, 3, 8, 8)),
                               rtol=1e-5)
    for bad in ([0.5, 0.5], [1.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="class_prior"):
            UNet((4, 8), num_classes=3, class_prior=bad)
