import matplotlib.pyplot as plt
import numpy as np
import pytest

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
