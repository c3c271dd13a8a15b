import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import nndl_helpers as nh


def test_live_curve_records_every_value_and_rejects_unknown_series():
    curve = nh.LiveCurve({"loss": ["train", "val"], "accuracy": ["val acc"]}, xlabel="epoch")
    for epoch in range(3):
        curve.update(epoch, train=1.0 / (epoch + 1), val=2.0, **{"val acc": 0.5})
    curve.close()
    assert curve.history["train"] == ([0.0, 1.0, 2.0], [1.0, 0.5, 1 / 3])
    assert len(curve.axes) == 2
    # the lines hold the data after the final draw
    np.testing.assert_allclose(curve.lines["train"].get_ydata(), [1.0, 0.5, 1 / 3])
    with pytest.raises(KeyError, match="unknown series 'test'"):
        curve.update(3, test=1.0)


def test_live_curve_throttles_redraws():
    curve = nh.LiveCurve(["loss"], min_interval=3600)
    curve.draw()  # sets the last-draw time
    curve.update(0, loss=1.0)
    assert len(curve.lines["loss"].get_xdata()) == 0  # not redrawn yet
    curve.close()
    assert len(curve.lines["loss"].get_xdata()) == 1


def test_decision_boundary_shades_the_predicted_classes():
    X, y = nh.make_toy_2d("blobs", n=60, n_classes=3)
    fig, ax = plt.subplots()
    nh.decision_boundary(lambda P: (P[:, 0] > 0).astype(int), X, y, ax=ax, resolution=30, title="t")
    assert ax.get_title() == "t" and len(ax.collections) >= 2
    fig2, ax2 = plt.subplots()
    nh.decision_boundary(lambda P: 1 / (1 + np.exp(-P[:, 0])), X, (y > 0).astype(int), ax=ax2,
                         resolution=30, proba=True, X_test=X[:5], y_test=y[:5])
    plt.close("all")


def test_image_grid_layout_and_errors():
    imgs = np.random.default_rng(0).random((7, 28 * 28))
    fig = nh.image_grid(imgs, labels=list("abcdefg"), ncols=4)
    assert len(fig.axes) == 8
    assert fig.axes[0].get_title() == "a"
    plt.close(fig)
    with pytest.raises(ValueError, match="square"):
        nh.image_grid(np.zeros((2, 10)))


def test_use_style_sets_house_style():
    nh.use_style(dpi=72)
    assert plt.rcParams["figure.dpi"] == 72 and plt.rcParams["axes.spines.top"] is False


def test_figure_to_png_gives_png_bytes_and_closes():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = nh.figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert not plt.fignum_exists(fig.number)


def test_tile_images_layout_padding_and_margin():
    images = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    out = nh.tile_images(images, ncols=3, pad=1, pad_value=-1.0, margin=2)
    # 2 rows x 3 columns of 2x3 images, 1-pixel gaps, a 2-pixel frame
    assert out.shape == (2 + 2 * 2 + 1 + 2, 2 + 3 * 3 + 2 * 1 + 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[2:4, 2:5], images[0])
    np.testing.assert_array_equal(out[2:4, 6:9], images[1])
    np.testing.assert_array_equal(out[5:7, 6:9], images[4])
    assert (out[5:7, 10:13] == -1).all()                    # the empty sixth cell
    assert (out[:2] == -1).all() and (out[:, -2:] == -1).all() and (out[4] == -1).all() and (out[:, 5] == -1).all()
    assert out[out != -1].size == images.size               # every image pixel appears once


def test_tile_images_accepts_channels_flat_rows_and_lists_of_rows():
    rng = np.random.default_rng(0)
    images = rng.random((6, 1, 4, 4))
    plain = nh.tile_images(images, ncols=3)
    assert plain.shape == (8, 12) and plain.dtype == np.float64
    np.testing.assert_array_equal(plain, nh.tile_images(images[:, 0], ncols=3))
    np.testing.assert_array_equal(plain, nh.tile_images(images.reshape(6, 16), ncols=3))
    np.testing.assert_array_equal(plain, nh.tile_images([images[:3], images[3:].reshape(3, 16)]))
    np.testing.assert_array_equal(plain, nh.tile_images(torch.as_tensor(images), ncols=3))
    # a square-ish grid by default; ragged rows are filled with pad_value, NaN stays NaN
    assert nh.tile_images(np.ones((10, 2, 2))).shape == (6, 8)   # 4 columns, 3 rows
    ragged = nh.tile_images([np.ones((1, 2, 2)), np.ones((3, 2, 2))], pad=1, pad_value=np.nan)
    assert ragged.shape == (5, 8) and np.isnan(ragged[:2, 3:]).all() and (ragged[3:, :] == 1).sum() == 12


def test_tile_images_normalizes_each_image_on_its_own():
    kernels = np.stack([np.array([[1.0, -4.0], [2.0, 0.0]]), np.array([[0.5, 0.25], [0.0, 0.0]]), np.zeros((2, 2))])
    out = nh.tile_images(kernels, ncols=3, normalize="max-abs")
    np.testing.assert_allclose(out[:, :2], kernels[0] / 4)
    np.testing.assert_allclose(out[:, 2:4], kernels[1] / 0.5)
    assert (out[:, 4:] == 0).all()                          # a constant image does not divide by zero
    out = nh.tile_images(kernels, ncols=3, pad=1, pad_value=0.5, normalize="min-max")
    np.testing.assert_allclose(out[:, :2], (kernels[0] + 4) / 6)
    assert out[:, :2].min() == 0 and out[:, :2].max() == 1 and (out[:, 2] == 0.5).all()
    raw = nh.tile_images(kernels, ncols=3)
    np.testing.assert_array_equal(raw[:, :2], kernels[0])   # no normalisation by default


@pytest.mark.parametrize("call, message", [
    (lambda: nh.tile_images(np.zeros((2, 3, 4, 4))), r"\(N, 1, H, W\)"),
    (lambda: nh.tile_images(np.zeros((2, 10))), "square"),
    (lambda: nh.tile_images(np.zeros(5)), r"\(N, H, W\)"),
    (lambda: nh.tile_images(np.zeros((0, 4, 4))), "no images"),
    (lambda: nh.tile_images([]), "empty list"),
    (lambda: nh.tile_images([np.zeros((2, 4, 4)), np.zeros((2, 5, 5))]), "same height and width"),
    (lambda: nh.tile_images([np.zeros((3, 4, 4))], ncols=2), "longest row"),
    (lambda: nh.tile_images(np.zeros((3, 4, 4)), ncols=0), "positive integer"),
    (lambda: nh.tile_images(np.zeros((3, 4, 4)), pad=-1), ">= 0"),
    (lambda: nh.tile_images(np.zeros((3, 4, 4)), normalize="l2"), "unknown normalize"),
    (lambda: nh.tile_images(np.array([["a"]] * 2)), "numbers"),
])
def test_tile_images_refuses_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_chinese_labels_render_with_the_installed_cjk_font():
    """No tofu boxes: the house style falls back to Noto Sans SC for characters DejaVu Sans lacks."""
    import warnings

    import matplotlib.pyplot as plt

    import nndl_helpers as nh

    assert nh.plot.cjk_font() == "Noto Sans SC", "pylopdf-fonts-zh-cn (requirements.txt) is not installed"
    nh.use_style()
    fig, ax = plt.subplots()
    ax.set_title("床前明月光 attention 注意力")
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["我", "愛"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # matplotlib warns "Glyph ... missing from font(s)"
        nh.figure_to_png(fig)
    plt.close(fig)
