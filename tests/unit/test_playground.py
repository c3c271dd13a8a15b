"""nndl_helpers.playground: the trainer behind the playground page (notebooks/playground.ipynb, notebook 04).

The trainer must train (the loss falls), its penalties must do what chapter 7 says (ℓ2 shrinks the
weights, ℓ1 zeroes them, gradients as torch.autograd computes them), and its features must be the
functions of the plane they claim to be. The page is driven here the way a click would drive it.
"""
import warnings

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import nndl_helpers as nh  # noqa: E402
from nndl_helpers.chapters.ch04a import MLP  # noqa: E402
from nndl_helpers.chapters.ch07a import SGD, Adam  # noqa: E402
from nndl_helpers.playground import (  # noqa: E402
    CSS_CLASSES, DATA_SETS, DOMAIN, FEATURES, GRID, GRID_POINTS, PENALTIES, Playground, Trainer, feature_matrix,
    penalised_loss, plot_boundary, toy_data, two_spirals,
)

# --------------------------------------------------------------------------- data and features


@pytest.mark.parametrize("name", list(DATA_SETS))
def test_every_data_set_is_balanced_and_fills_the_plane(name):
    X, y = toy_data(name, 0, np.random.default_rng(0), n=300)
    assert X.shape == (300, 2) and y.shape == (300,)
    assert set(np.unique(y)) == {0, 1} and abs(np.mean(y) - 0.5) < 0.05
    assert np.mean(np.abs(X) < DOMAIN) > 0.99 and np.abs(X).max() > 2.5   # in the plane, not a dot in its centre


def test_two_spirals_arms_are_each_others_half_turn():
    X, y = two_spirals(400, 0.0, np.random.default_rng(1), turns=1.5)
    r = np.linalg.norm(X, axis=1)
    angle = np.arctan2(X[:, 0], X[:, 1])                       # the generator's t, measured from the x2 axis
    expected = 2 * np.pi * 1.5 * r + np.pi * y
    assert np.allclose(np.angle(np.exp(1j * (angle - expected))), 0, atol=1e-9)
    assert np.array_equal(y, np.arange(400) % 2)


def test_feature_matrix_computes_each_named_function():
    P = np.array([[1.0, 2.0], [-3.0, 0.5]])
    F_all = feature_matrix(P, list(FEATURES))
    expected = np.c_[P[:, 0], P[:, 1], P[:, 0] ** 2, P[:, 1] ** 2, P[:, 0] * P[:, 1], np.sin(P[:, 0]), np.sin(P[:, 1])]
    np.testing.assert_allclose(F_all, expected)
    np.testing.assert_allclose(feature_matrix(P, ["x1x2", "x1"]), expected[:, [4, 0]])
    for bad in (["x3"], []):
        with pytest.raises(ValueError, match="features must be"):
            feature_matrix(P, bad)


def test_grid_covers_the_plane_top_row_first():
    assert GRID_POINTS.shape == (GRID * GRID, 2)
    assert GRID_POINTS[0].tolist() == [-DOMAIN, DOMAIN] and GRID_POINTS[-1].tolist() == [DOMAIN, -DOMAIN]


def test_trainer_keeps_features_in_the_drawings_order_and_rejects_unknown_ones():
    t = Trainer(features=("sin x1", "x2", "x1"))
    assert t.features == ["x1", "x2", "sin x1"] and t.model.layer_sizes[0] == 3
    np.testing.assert_allclose(t.F_train[:, 2], np.sin(t.X_train[:, 0]))
    for bad in (("x1", "x9"), ()):
        with pytest.raises(ValueError, match="features must be"):
            Trainer(features=bad)
    with pytest.raises(ValueError, match="unknown data set"):
        Trainer(dataset="rings")
    with pytest.raises(ValueError, match="unknown activation"):
        Trainer(activation="swish")
    with pytest.raises(ValueError, match="batch_size must be"):
        Trainer(batch_size=0)


def test_features_decide_what_a_network_without_hidden_layer_can_learn():
    """XOR: no line in (x1, x2) separates it; the product x1 x2 alone does. Circles: x1², x2² do."""
    linear = Trainer(dataset="XOR", hidden=(), lr=0.1)
    product = Trainer(dataset="XOR", features=("x1x2",), hidden=(), lr=0.1)
    squares = Trainer(dataset="circles", features=("x1^2", "x2^2"), hidden=(), lr=0.03)
    for t in (linear, product, squares):
        t.train(50)
    assert linear.accuracy() < 0.75
    assert product.accuracy() > 0.9 and squares.accuracy() > 0.9


# --------------------------------------------------------------------------- training


def test_training_lowers_the_loss_and_separates_the_circles():
    t = Trainer()                                   # the page's defaults: circles, 2-4-2 tanh, SGD 0.1
    first_train, first_test = t.history["train"][0], t.history["test"][0]
    t.train(100)
    assert t.epoch == 100 and len(t.history["train"]) == 101 and t.history["epoch"][-1] == 100
    assert t.history["train"][-1] < 0.3 * first_train and t.history["test"][-1] < 0.3 * first_test
    assert t.accuracy("train") > 0.95 and t.accuracy("test") > 0.9


@pytest.mark.parametrize("batch_size,steps", [(None, 1), (200, 1), (10, 20), (30, 7)])
def test_an_epoch_is_one_pass_in_mini_batches(batch_size, steps):
    t = Trainer(batch_size=batch_size, train_percent=50)  # 200 of the 400 points train
    assert len(t.X_train) == 200
    t.train(3)
    assert t.optimizer.t == 3 * steps


def test_optimizers_come_from_chapter_7a_and_learning_rate_changes_apply_at_once():
    t = Trainer(optimizer="adam", lr=0.03, batch_size=None)
    assert isinstance(t.optimizer, Adam) and t.optimizer.lr == 0.03
    t.lr = 0.001
    t.run_epoch()
    assert t.optimizer.lr == 0.001
    assert isinstance(Trainer().optimizer, SGD) and Trainer().optimizer.momentum == 0
    with pytest.raises(ValueError, match="unknown optimizer"):
        Trainer(optimizer="lbfgs")


def test_full_batch_sgd_epoch_is_one_gradient_step_of_the_data_loss():
    t = Trainer(batch_size=None, lr=0.5, hidden=(3,))
    before = {k: v.copy() for k, v in t.model.params.items()}
    _, grads = t.model.loss(t.F_train, t.y_train)
    t.run_epoch()
    for name, p in t.model.params.items():
        np.testing.assert_allclose(p, before[name] - 0.5 * grads[name], rtol=1e-12, atol=1e-15)


def test_same_seed_same_run_and_the_buttons_draw_anew():
    a, b = Trainer(dataset="moons", noise=20, seed=3), Trainer(dataset="moons", noise=20, seed=3)
    a.train(5)
    b.train(5)
    assert a.history == b.history
    X_before, W_before = a.X_train.copy(), a.model.params["W1"].copy()
    a.reset(new_weights=True)                       # "reset": new weights, same data
    assert a.epoch == 0 and np.array_equal(a.X_train, X_before) and not np.allclose(a.model.params["W1"], W_before)
    a.new_data(redraw=True)                         # "regenerate": a new sample
    assert not np.array_equal(a.X_train, X_before)


def test_a_diverging_run_stops_quietly_and_says_so():
    """A linear network on all seven features with learning rate 10: the weights overflow within epochs."""
    t = Trainer(dataset="spiral", activation="identity", features=list(FEATURES), hidden=(8, 8, 8), lr=10.0,
                batch_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no overflow warnings reach the page
        t.train(50)
        page = Playground(t)
    assert t.diverged and t.epoch < 50
    assert "diverged" in page.status.value


# --------------------------------------------------------------------------- penalties


def _torch_loss(model, penalty, rate, X, y):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    a = torch.as_tensor(X)
    L = model.num_layers
    for l in range(1, L + 1):
        a = a @ params[f"W{l}"] + params[f"b{l}"]
        if l < L:
            a = torch.tanh(a)
    loss = F.binary_cross_entropy_with_logits(a[:, 0], torch.as_tensor(y, dtype=torch.float64))
    weights = [params[f"W{l}"] for l in range(1, L + 1)]
    if penalty == "L1":
        loss = loss + rate * sum(W.abs().sum() for W in weights)
    elif penalty == "L2":
        loss = loss + 0.5 * rate * sum((W * W).sum() for W in weights)
    loss.backward()
    return loss.item(), {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize("penalty,rate", [("none", 0.3), ("L1", 0.05), ("L2", 0.05), ("L1", 0.0)])
def test_penalised_loss_matches_autograd(penalty, rate):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(11, 4)), (rng.random(11) > 0.5).astype(np.int64)
    model = MLP([4, 5, 3, 1], "tanh", output="sigmoid", seed=1)
    loss, grads = penalised_loss(model, X, y, penalty, rate)
    ref_loss, ref = _torch_loss(model, penalty, rate, X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert set(grads) == set(model.params)
    for name in model.params:
        assert nh.rel_error(grads[name], ref[name]) < 1e-9, name


def test_penalties_touch_weights_only():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(9, 2)), (rng.random(9) > 0.5).astype(np.int64)
    model = MLP([2, 4, 1], "tanh", output="sigmoid", seed=0)
    base_loss, base = penalised_loss(model, X, y)
    for penalty, extra in (("L1", np.sign), ("L2", lambda W: W)):
        loss, grads = penalised_loss(model, X, y, penalty, 0.1)
        for name, p in model.params.items():
            expected = base[name] + (0.1 * extra(p) if name.startswith("W") else 0)
            np.testing.assert_allclose(grads[name], expected, rtol=1e-12)
        assert loss > base_loss
    with pytest.raises(ValueError, match="unknown penalty"):
        penalised_loss(model, X, y, "L3", 0.1)
    assert PENALTIES == ("none", "L1", "L2")


def test_l2_shrinks_the_weights_and_l1_switches_them_off():
    runs = {}
    for penalty in ("none", "L1", "L2"):
        t = Trainer(dataset="circles", features=list(FEATURES), hidden=(4,), penalty=penalty, penalty_rate=0.01,
                    lr=0.03)
        t.train(50)
        runs[penalty] = t.weights()
    norm = {k: np.linalg.norm(w) for k, w in runs.items()}
    near_zero = {k: np.mean(np.abs(w) < 1e-2) for k, w in runs.items()}
    assert norm["L2"] < norm["none"] and norm["L1"] < norm["none"]
    assert near_zero["L1"] > near_zero["L2"] + 0.1 and near_zero["L1"] > near_zero["none"] + 0.1


# --------------------------------------------------------------------------- the page


def test_page_controls_drive_the_trainer():
    page = Playground()
    image = page.boundary_view.value
    page.dataset.value = "XOR"
    assert page.trainer.dataset == "XOR" and page.trainer.epoch == 0
    page.set_hidden([8, 8])
    page.feature_buttons["x1x2"].value = True
    assert page.trainer.model.layer_sizes == [3, 8, 8, 1]
    page.learning_rate.value, page.penalty.value, page.penalty_rate.value = 0.03, "L1", 0.001
    assert (page.trainer.lr, page.trainer.penalty, page.trainer.penalty_rate) == (0.03, "L1", 0.001)
    page.optimizer.value = "adam"
    assert isinstance(page.trainer.optimizer, Adam) and page.trainer.epoch == 0
    page.step_button.click()
    page.step_button.click()
    assert page.trainer.epoch == 2 and page.boundary_view.value != image
    assert page.epoch_label.value.endswith("epoch <b>00,002</b></span>")
    page.set_hidden([20, 1, 1, 1, 1, 1, 1, 1])       # clamped to the page's limits
    assert page.trainer.hidden == [8, 1, 1, 1, 1, 1]
    for name in FEATURES:
        page.feature_buttons[name].value = False
    assert "at least one feature" in page.status.value


def test_page_keeps_a_trainers_settings_and_tags_its_controls():
    t = Trainer(dataset="spiral", lr=0.05, penalty_rate=0.02, batch_size=None, optimizer="adam")
    page = Playground(t)
    assert page.trainer is t and page.learning_rate.value == 0.05 and page.penalty_rate.value == 0.02
    assert page.batch_size.value == 0 and page.optimizer.value == "adam" and page.dataset.value == "spiral"
    for attribute, css in CSS_CLASSES.items():          # what tests/browser/test_browser.py looks for
        assert css in getattr(page, attribute)._dom_classes
    assert "nndl-playground" in page.widget._dom_classes
    assert "nndl-feature-x1x2" in page.feature_buttons["x1x2"]._dom_classes
    page.batch_size.value = 10
    assert t.batch_size == 10
    page.batch_size.value = 0                           # "all"
    assert t.batch_size is None
    assert Playground(hidden=(3,)).trainer.hidden == [3]
    with pytest.raises(ValueError, match="not both"):
        Playground(t, lr=0.1)


def test_frames_train_and_plot_boundary_draws_a_static_figure():
    page = Playground(dataset="moons")
    loss = page.trainer.history["train"][-1]
    for _ in range(5):
        page.frame()
    assert page.trainer.epoch >= 5 and page.trainer.history["train"][-1] < loss
    fig, ax = plt.subplots()
    plot_boundary(page.trainer, ax)
    assert ax.images and ax.get_title().startswith("moons, epoch")
    plt.close(fig)
