"""``nh.make_digit_canvases``: the synthetic segmentation and detection set of chapters 16b and 16c."""
import numpy as np
import pytest

from nndl_helpers.data import _resize_bilinear, make_digit_canvases


def _digits(n=40, seed=0):
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28), np.float32)
    for i in range(n):  # a filled rectangle of random extent stands in for a digit
        y0, x0 = rng.integers(2, 10, size=2)
        y1, x1 = rng.integers(18, 26, size=2)
        imgs[i, y0:y1, x0:x1] = rng.uniform(0.6, 1.0)
    return imgs, rng.integers(0, 10, size=n)


def test_shapes_types_and_ranges():
    imgs, labels = _digits()
    d = make_digit_canvases(imgs, labels, 30, size=40, digits=(1, 3), rng=np.random.default_rng(1))
    assert d["images"].shape == (30, 40, 40) and d["images"].dtype == np.float32
    assert d["masks"].shape == (30, 40, 40) and d["masks"].dtype == np.int64
    assert 0.0 <= d["images"].min() and d["images"].max() <= 1.0
    assert len(d["boxes"]) == len(d["labels"]) == 30
    counts = [len(b) for b in d["boxes"]]
    assert min(counts) >= 1 and max(counts) <= 3 and sum(counts) > 30
    for boxes, cls in zip(d["boxes"], d["labels"]):
        assert boxes.dtype == np.float32 and boxes.shape == (len(cls), 4) and cls.dtype == np.int64
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert boxes.min() >= 0 and boxes.max() <= 40


def test_masks_boxes_and_labels_agree():
    imgs, labels = _digits()
    d = make_digit_canvases(imgs, labels, 25, size=48, digits=(2, 4), rng=np.random.default_rng(2))
    for img, mask, boxes, cls in zip(d["images"], d["masks"], d["boxes"], d["labels"]):
        inside = np.zeros(mask.shape, bool)
        for (x1, y1, x2, y2), c in zip(boxes.astype(int), cls):
            region = mask[y1:y2, x1:x2]
            # the box is tight: its mask touches all four edges, and holds this digit's class only
            assert set(np.unique(region)) <= {0, 1 + c}
            on = region > 0
            assert on[0].any() and on[-1].any() and on[:, 0].any() and on[:, -1].any()
            assert not inside[y1:y2, x1:x2].any(), "boxes overlap"
            inside[y1:y2, x1:x2] = True
        assert not mask[~inside].any() and np.all(img[~inside] <= 0.3)  # only faint resize edges outside
        assert np.all(img[mask > 0] > 0.3)


def test_reproducible_with_the_same_generator():
    imgs, labels = _digits()
    a = make_digit_canvases(imgs, labels, 5, rng=np.random.default_rng(7))
    b = make_digit_canvases(imgs, labels, 5, rng=np.random.default_rng(7))
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["masks"], b["masks"])
    assert all(np.array_equal(x, y) for x, y in zip(a["boxes"], b["boxes"]))


def test_resize_keeps_constants_and_size():
    assert np.allclose(_resize_bilinear(np.full((28, 28), 0.5, np.float32), 17), 0.5)
    img = np.arange(28 * 28, dtype=np.float32).reshape(28, 28)
    assert np.array_equal(_resize_bilinear(img, 28), img)
    assert _resize_bilinear(img, 14).shape == (14, 14)


@pytest.mark.parametrize("kwargs, match", [
    ({"digits": (0, 2)}, "digits"),
    ({"digits": (3, 2)}, "digits"),
    ({"scale": (0.5, 2.0), "size": 48}, "scale"),
    ({"scale": (0.0, 1.0)}, "scale"),
])
def test_bad_arguments(kwargs, match):
    imgs, labels = _digits()
    with pytest.raises(ValueError, match=match):
        make_digit_canvases(imgs, labels, 2, **kwargs)


def test_bad_images_and_labels():
    imgs, labels = _digits()
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        make_digit_canvases(imgs.reshape(len(imgs), -1), labels, 2)
    with pytest.raises(ValueError, match="labels"):
        make_digit_canvases(imgs, labels[:-1], 2)
