"""The neural-network playground: one trainer and one page, in the spirit of TensorFlow Playground.

Plumbing, not teaching: nothing here computes a forward or backward pass of its own. ``Trainer``
trains chapter 4's ``MLP`` with an optimizer of chapter 7a on a 2-D toy problem, after mapping each
point to the features switched on; ``Playground`` is the page of widgets around a trainer, drawn with
Pillow so that a frame takes a few milliseconds. ``notebooks/playground.ipynb`` (served as a page of
its own by ``python course.py playground``) and the end of notebook 04 both use them. Like
``nndl_helpers.gradcheck``, this module imports chapter code, which no chapter module imports back.

    trainer = Trainer(dataset="spiral", hidden=(8, 8), optimizer="adam", lr=0.03, batch_size=None)
    trainer.train(300)                  # epochs; batch_size=None is full-batch gradient descent
    trainer.accuracy("test"), trainer.history["test"][-1]
    display(Playground(trainer))        # the page; its controls change the trainer
    plot_boundary(trainer, ax)          # the decision boundary as a static matplotlib figure
"""
from __future__ import annotations

import asyncio
import collections
import functools
import io
import os
import time

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from PIL import Image, ImageDraw, ImageFont

from . import data as _data
from .chapters.ch03 import binary_cross_entropy_with_logits, sigmoid
from .chapters.ch04a import ACTIVATIONS, MLP
from .chapters.ch07a import OPTIMIZERS, make_optimizer

N_POINTS = 400          # points per data set, split into training and test data by train_percent
DOMAIN = 6.0            # the plane shown is [-6, 6]^2, as in TensorFlow Playground
GRID = 60               # the network is evaluated on GRID x GRID points of the plane per frame
BOUNDARY_PX = 300       # size of the decision-boundary image
LOSS_PX = 70            # height of the loss chart
NODE_PX = 34            # size of one neuron's thumbnail
FRAME_S = 1 / 20        # at most 20 frames per second while playing
TRAIN_BUDGET_S = 0.03   # each frame trains whole epochs for about this long (at least one)
MAX_LAYERS, MAX_NEURONS = 6, 8


# --------------------------------------------------------------------------- data and features

def two_spirals(n, noise, rng, turns=1.5):
    """Two interleaved spirals of ``turns`` turns each in the unit disc, as in TensorFlow Playground.

    Labels alternate 0, 1, 0, ...; the second arm is the first turned by 180 degrees. ``noise`` is the
    standard deviation of Gaussian noise added to each coordinate. Returns X (n, 2), y (n,) int64.
    """
    y = np.arange(n) % 2
    r = rng.uniform(0.05, 1.0, size=n)
    t = 2 * np.pi * turns * r + np.pi * y
    X = np.c_[r * np.sin(t), r * np.cos(t)] + noise * rng.normal(size=(n, 2))
    return X, y.astype(np.int64)


def _toy(kind):
    return lambda n, noise, rng: _data.make_toy_2d(kind, n, noise=noise, rng=rng)


# label -> (generator(n, noise, rng) -> (X, y), centre of the raw data, scale that fills about [-5, 5])
DATA_SETS = {
    "circles": (_toy("circles"), (0.0, 0.0), 5.0),
    "XOR": (_toy("xor"), (0.0, 0.0), 5.0),
    "Gaussians": (_toy("gaussians"), (0.0, 0.0), 2.2),
    "spiral": (two_spirals, (0.0, 0.0), 5.0),
    "moons": (_toy("moons"), (0.5, 0.25), 3.2),
}

# name -> (label, function of the (N, 2) points)
FEATURES = {
    "x1": ("x₁", lambda P: P[:, 0]),
    "x2": ("x₂", lambda P: P[:, 1]),
    "x1^2": ("x₁²", lambda P: P[:, 0] ** 2),
    "x2^2": ("x₂²", lambda P: P[:, 1] ** 2),
    "x1x2": ("x₁x₂", lambda P: P[:, 0] * P[:, 1]),
    "sin x1": ("sin x₁", lambda P: np.sin(P[:, 0])),
    "sin x2": ("sin x₂", lambda P: np.sin(P[:, 1])),
}


def toy_data(name, noise_percent, rng, n=N_POINTS):
    """n points of a named problem (a key of DATA_SETS), labels 0/1, scaled to the plane.

    noise_percent in 0..50 is the generator's noise in percent of the raw data's unit.
    """
    if name not in DATA_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(DATA_SETS)}")
    make, centre, scale = DATA_SETS[name]
    X, y = make(n, noise_percent / 100, rng)
    return (X - np.asarray(centre)) * scale, y


def feature_matrix(P, names):
    """(N, 2) points -> (N, len(names)) inputs of the network, one column per feature name."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not len(names):
        raise ValueError(f"features must be a non-empty selection of {list(FEATURES)}, got {list(names)}")
    return np.stack([FEATURES[name][1](P) for name in names], axis=1)


# the plane, row by row from the top (x2 = +DOMAIN) so that row 0 is the top of an image
_AXIS = np.linspace(-DOMAIN, DOMAIN, GRID)
GRID_POINTS = np.stack(np.meshgrid(_AXIS, _AXIS[::-1]), axis=-1).reshape(-1, 2)


# --------------------------------------------------------------------------- the penalty

PENALTIES = ("none", "L1", "L2")


def penalised_loss(model, X, y, penalty="none", rate=0.0):
    """The model's mean loss on (X, y) plus an ℓ1 or ℓ2 penalty on its weights, and all gradients.

    L1 adds rate * sum |W| with subgradient rate * sign(W) (0 at exactly 0, as torch does); L2 adds
    (rate / 2) * sum ||W||^2 with gradient rate * W. Biases (b1, b2, ...) are not penalised.
    Returns (loss, grads) like MLP.loss.
    """
    if penalty not in PENALTIES:
        raise ValueError(f"unknown penalty {penalty!r}; choose one of {PENALTIES}")
    loss, grads = model.loss(X, y)
    if penalty == "none" or not rate:
        return loss, grads
    for name, W in model.params.items():
        if name.startswith("W"):
            if penalty == "L1":
                loss += rate * float(np.abs(W).sum())
                grads[name] = grads[name] + rate * np.sign(W)
            else:
                loss += 0.5 * rate * float(np.sum(W * W))
                grads[name] = grads[name] + rate * W
    return loss, grads


# --------------------------------------------------------------------------- the trainer

class Trainer:
    """Data -> features -> MLP (one sigmoid output, cross-entropy loss) -> optimizer, an epoch at a time.

    dataset        a key of DATA_SETS; noise in percent (0..50); train_percent of n_points for training.
    features       names from FEATURES (kept in FEATURES order: that is the order of W1's rows).
    hidden         hidden-layer widths, () for logistic regression on the features; activation a key
                   of chapter 4's ACTIVATIONS.
    optimizer, lr  a chapter-7a optimizer by name (OPTIMIZERS: "sgd", "adam", ...) and its learning rate.
    batch_size     samples per update; None is the whole training set (full-batch gradient descent).
    penalty        "none", "L1" or "L2" on the weights, with strength penalty_rate (penalised_loss).
    seed           seeds the data, the split, the weights and the mini-batch order.

    Changing dataset, noise or train_percent takes effect at new_data(); features, hidden, activation
    and optimizer at reset(); lr, batch_size and the penalty at the next epoch. ``history`` records
    the training and test losses (without the penalty) after every epoch.
    """

    def __init__(self, *, dataset="circles", noise=0, train_percent=50, n_points=N_POINTS,
                 features=("x1", "x2"), hidden=(4, 2), activation="tanh", optimizer="sgd", lr=0.1,
                 batch_size=10, penalty="none", penalty_rate=0.0, seed=0):
        self.dataset, self.noise, self.train_percent, self.n_points = dataset, noise, train_percent, n_points
        self.features, self.hidden, self.activation = list(features), list(hidden), activation
        self.optimizer_name, self.lr, self.batch_size = optimizer, lr, batch_size
        self.penalty, self.penalty_rate = penalty, penalty_rate
        self.data_seed = self.weight_seed = seed
        self.new_data(redraw=False)

    def __repr__(self):
        return (f"Trainer({self.dataset!r}, features={self.features}, {self.model!r}, "
                f"{type(self.optimizer).__name__}(lr={self.lr:g}), epoch={self.epoch})")

    # -- what a control changes
    def new_data(self, redraw=True):
        """Draw the data set (a new sample if ``redraw``), split it, and start a new network."""
        if not 0 < self.train_percent < 100:
            raise ValueError(f"train_percent must lie strictly between 0 and 100, got {self.train_percent}")
        self.data_seed += bool(redraw)
        X, y = toy_data(self.dataset, self.noise, np.random.default_rng(self.data_seed), n=self.n_points)
        self.X_train, self.X_test, self.y_train, self.y_test = _data.train_test_split(
            X, y, test_size=1 - self.train_percent / 100, rng=np.random.default_rng(self.data_seed))
        self.reset(new_weights=False)

    def reset(self, new_weights=True):
        """A fresh network (new random weights if ``new_weights``) and optimizer for the current settings."""
        if not self.features or not set(self.features) <= set(FEATURES):
            raise ValueError(f"features must be a non-empty selection of {list(FEATURES)}, got {self.features}")
        self.features = [name for name in FEATURES if name in self.features]
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"unknown penalty {self.penalty!r}; choose one of {PENALTIES}")
        if self.batch_size is not None and not int(self.batch_size) >= 1:
            raise ValueError(f"batch_size must be a number >= 1, or None for the whole training set, "
                             f"got {self.batch_size!r}")
        self.weight_seed += bool(new_weights)
        self.F_train = feature_matrix(self.X_train, self.features)
        self.F_test = feature_matrix(self.X_test, self.features)
        self.F_grid = feature_matrix(GRID_POINTS, self.features)
        self.model = MLP([len(self.features), *self.hidden, 1], self.activation, output="sigmoid",
                         seed=self.weight_seed)
        self.optimizer = make_optimizer(self.optimizer_name, lr=self.lr)
        self.batch_rng = np.random.default_rng(self.weight_seed)
        self.epoch = 0
        self.history = {"epoch": [], "train": [], "test": []}
        self._record()

    # -- training
    def run_epoch(self):
        """One pass over the training data in shuffled mini-batches; records the losses after it."""
        self.optimizer.lr = self.lr
        batch_size = len(self.F_train) if self.batch_size is None else int(self.batch_size)
        with np.errstate(over="ignore", invalid="ignore"):   # a diverging run shows "diverged" instead
            for X_batch, y_batch in _data.minibatches(self.F_train, self.y_train, batch_size, rng=self.batch_rng):
                _, grads = penalised_loss(self.model, X_batch, y_batch, self.penalty, self.penalty_rate)
                self.optimizer.step(self.model.params, grads)
        self.epoch += 1
        self._record()

    def train(self, epochs):
        """Run ``epochs`` epochs, stopping early if the loss diverges."""
        for _ in range(int(epochs)):
            self.run_epoch()
            if self.diverged:
                break

    def _logits(self, F):
        with np.errstate(over="ignore", invalid="ignore"):   # inf and nan after a divergence are expected
            return self.model(F)[:, 0]

    def data_loss(self, F, y):
        """Mean cross-entropy, without the penalty: the number the page shows."""
        with np.errstate(over="ignore", invalid="ignore"):
            return binary_cross_entropy_with_logits(self._logits(F), y.astype(np.float64))[0]

    def _record(self):
        self.history["epoch"].append(self.epoch)
        self.history["train"].append(self.data_loss(self.F_train, self.y_train))
        self.history["test"].append(self.data_loss(self.F_test, self.y_test))

    @property
    def diverged(self):
        return not np.isfinite(self.history["train"][-1])

    def accuracy(self, split="test"):
        """Share of the test (or "train") points on the right side of the boundary."""
        F, y = (self.F_test, self.y_test) if split == "test" else (self.F_train, self.y_train)
        return float(np.mean((self._logits(F) > 0) == y))

    def weights(self):
        """Every weight of the network (no biases), as one flat array."""
        return np.concatenate([p.ravel() for name, p in self.model.params.items() if name.startswith("W")])

    def grid_outputs(self):
        """Over the plane: P(y=1) (GRID, GRID), and each hidden layer's outputs (GRID, GRID, M_l)."""
        with np.errstate(over="ignore", invalid="ignore"):
            proba = sigmoid(self._logits(self.F_grid)).reshape(GRID, GRID)
            hidden = self.model.hidden_activations(self.F_grid)
        return proba, [h.reshape(GRID, GRID, -1) for h in hidden]


# --------------------------------------------------------------------------- drawing (Pillow)

ORANGE, BLUE, WHITE = np.array([245, 147, 34.0]), np.array([8, 119, 189.0]), np.array([255, 255, 255.0])
_T = np.linspace(-1, 1, 256)[:, None]
_DIVERGING = np.where(_T < 0, WHITE + (-_T) * (ORANGE - WHITE), WHITE + _T * (BLUE - WHITE))
LUT_BACKGROUND = (WHITE + 0.65 * (_DIVERGING - WHITE)).astype(np.uint8)  # lighter, so points stand out
LUT_NODE = _DIVERGING.astype(np.uint8)
ROW, COLUMN, LEFT, TOP = NODE_PX + 10, NODE_PX + 80, 56, 26  # the network drawing's grid


@functools.lru_cache(maxsize=1)
def _font():
    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), 12)


def colour_map(values, lut):
    """Values in [-1, 1] (orange .. white .. blue) -> uint8 RGB."""
    index = np.round((np.clip(np.nan_to_num(values), -1, 1) + 1) * 127.5).astype(np.intp)
    return lut[index]


def encode(image, fmt="jpeg"):
    """Image bytes for an ipywidgets Image. JPEG encodes ten times faster than PNG at this size,
    which is what keeps a frame short; the small loss chart stays PNG."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="jpeg", quality=90)
    else:
        image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def _to_pixels(P, size):
    return (P[:, 0] + DOMAIN) / (2 * DOMAIN) * size, (DOMAIN - P[:, 1]) / (2 * DOMAIN) * size


def draw_boundary(proba, X_train, y_train, X_test=None, y_test=None, discretize=False):
    """The plane coloured by P(y=1), training points with a white rim, test points with a black one."""
    t = 2 * proba - 1
    if discretize:
        t = np.sign(t)
    image = Image.fromarray(colour_map(t, LUT_BACKGROUND)).resize((BOUNDARY_PX, BOUNDARY_PX), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    r = 3.2
    groups = [(X_train, y_train, "white")] + ([(X_test, y_test, "black")] if X_test is not None else [])
    colours = {0: tuple(int(c) for c in ORANGE), 1: tuple(int(c) for c in BLUE)}
    for P, y, rim in groups:
        for px, py, label in zip(*_to_pixels(P, BOUNDARY_PX), y.tolist()):
            draw.ellipse((px - r, py - r, px + r, py + r), fill=colours[label], outline=rim, width=1)
    draw.rectangle((0, 0, BOUNDARY_PX - 1, BOUNDARY_PX - 1), outline=(180, 180, 180))
    return image


def node_images(values, faded=False):
    """(H, W, M) outputs of M neurons (or features) over the plane -> M thumbnails of NODE_PX.

    Each map is divided by max(1, its largest |value|): tanh and sigmoid keep their true colours,
    unbounded activations (ReLU) are squashed into [-1, 1]."""
    with np.errstate(invalid="ignore"):
        values = values / np.maximum(1.0, np.nan_to_num(np.abs(values)).max(axis=(0, 1)))
    rgb = colour_map(values, LUT_NODE)
    if faded:
        rgb = (WHITE + 0.2 * (rgb - WHITE)).astype(np.uint8)
    return [Image.fromarray(np.ascontiguousarray(rgb[:, :, k])).resize((NODE_PX, NODE_PX), Image.BILINEAR)
            for k in range(rgb.shape[2])]


@functools.lru_cache(maxsize=1)
def _feature_thumbs():
    maps = np.stack([feature_matrix(GRID_POINTS, [name])[:, 0].reshape(GRID, GRID) for name in FEATURES], -1)
    return list(zip(node_images(maps[::2, ::2]), node_images(maps[::2, ::2], faded=True)))


def _node_centre(column, i):
    return LEFT + column * COLUMN + NODE_PX / 2, TOP + i * ROW + NODE_PX / 2


def _paste_node(image, thumb, column, i):
    x, y = _node_centre(column, i)
    image.paste(thumb, (int(x - NODE_PX / 2), int(y - NODE_PX / 2)))


@functools.lru_cache(maxsize=64)
def _network_background(enabled, columns):
    """What changes only with the architecture: the canvas, column titles, feature thumbnails and names."""
    width = LEFT + (len(columns) - 1) * COLUMN + NODE_PX + 12
    image = Image.new("RGB", (width, TOP + max(columns) * ROW + 4), "white")
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(FEATURES):
        on = name in enabled
        _paste_node(image, _feature_thumbs()[i][not on], 0, i)
        draw.text((LEFT - 6, _node_centre(0, i)[1]), FEATURES[name][0], font=_font(), anchor="rm",
                  fill=(60, 60, 60) if on else (190, 190, 190))
    titles = ["features"] + [f"layer {c}" for c in range(1, len(columns) - 1)] + ["output"]
    for c, title in enumerate(titles):
        draw.text((LEFT + c * COLUMN + NODE_PX / 2, 4), title, fill=(90, 90, 90), font=_font(), anchor="mt")
    return image


def draw_network(params, enabled, hidden_maps, proba):
    """Features | hidden layers | output, each node a thumbnail, links coloured and sized by weight."""
    columns = (len(FEATURES),) + tuple(m.shape[-1] for m in hidden_maps) + (1,)
    image = _network_background(tuple(enabled), columns).copy()
    draw = ImageDraw.Draw(image)
    # rows of the first weight matrix belong to the switched-on features, in FEATURES order
    sources = [[i for i, name in enumerate(FEATURES) if name in enabled]] + [list(range(n)) for n in columns[1:-1]]
    for l, rows in enumerate(sources, start=1):
        W = np.nan_to_num(params[f"W{l}"])
        strength = np.minimum(np.abs(W), 2.0) / 2.0
        colour = np.where((W > 0)[..., None], BLUE, ORANGE)
        colour = (WHITE + (0.25 + 0.75 * strength)[..., None] * (colour - WHITE)).astype(int).tolist()
        widths = (1 + np.round(3 * strength)).astype(int).tolist()
        for j, i in enumerate(rows):
            x0, y0 = _node_centre(l - 1, i)
            for k in range(W.shape[1]):
                x1, y1 = _node_centre(l, k)
                draw.line((x0 + NODE_PX / 2, y0, x1 - NODE_PX / 2, y1), fill=tuple(colour[j][k]), width=widths[j][k])
    for c, maps in enumerate(hidden_maps, start=1):
        for k, thumb in enumerate(node_images(maps[::2, ::2])):
            _paste_node(image, thumb, c, k)
    _paste_node(image, node_images(2 * proba[::2, ::2, None] - 1)[0], len(columns) - 1, 0)
    return image


def draw_losses(history, width=BOUNDARY_PX, height=LOSS_PX):
    """Training loss (grey) and test loss (black) against epochs, from 0 to the largest loss so far."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    train, test = np.asarray(history["train"]), np.asarray(history["test"])
    finite = np.isfinite(train) & np.isfinite(test)
    if finite.sum() >= 2:
        train, test = train[finite], test[finite]
        keep = np.unique(np.linspace(0, len(train) - 1, min(len(train), width)).astype(int))
        top = max(float(train.max()), float(test.max()), 1e-9)
        x = keep / max(len(train) - 1, 1) * (width - 4) + 2
        for series, colour in ((train, (150, 150, 150)), (test, (30, 30, 30))):
            y = height - 3 - series[keep] / top * (height - 6)
            draw.line(list(zip(x.tolist(), y.tolist())), fill=colour, width=2)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(200, 200, 200))
    return image


def plot_boundary(trainer, ax=None, *, title=None, show_test=True):
    """The page's decision-boundary image in a matplotlib axes, for a static figure of a trainer."""
    ax = ax or plt.gca()
    proba, _ = trainer.grid_outputs()
    test = (trainer.X_test, trainer.y_test) if show_test else (None, None)
    ax.imshow(draw_boundary(proba, trainer.X_train, trainer.y_train, *test),
              extent=(-DOMAIN, DOMAIN, -DOMAIN, DOMAIN))
    ax.set_xticks([]), ax.set_yticks([])
    if title is None:
        title = (f"{trainer.dataset}, epoch {trainer.epoch}: test accuracy {trainer.accuracy():.2f}")
    ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------- the page (ipywidgets)

LEARNING_RATES = (0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
PENALTY_RATES = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
BATCH_SIZES = (1, 2, 3, 5, 10, 15, 20, 30, 50, 100, None)   # None: the whole training set
OPTIMIZER_LABELS = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad",
                    "rmsprop": "RMSprop", "adadelta": "AdaDelta", "adam": "Adam", "adamw": "AdamW"}
ACTIVATION_LABELS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": "Linear",
                     "leaky_relu": "Leaky ReLU", "elu": "ELU", "softplus": "Softplus", "silu": "SiLU",
                     "gelu": "GELU"}
# attribute of the page -> its CSS class
CSS_CLASSES = {
    "play_button": "nndl-play", "step_button": "nndl-step", "reset_button": "nndl-reset",
    "epoch_label": "nndl-epoch", "loss_label": "nndl-loss", "boundary_view": "nndl-boundary",
    "network_view": "nndl-network", "loss_view": "nndl-loss-curve", "status": "nndl-status",
    "dataset": "nndl-dataset", "learning_rate": "nndl-learning-rate", "optimizer": "nndl-optimizer",
    "activation": "nndl-activation", "penalty": "nndl-penalty", "penalty_rate": "nndl-penalty-rate",
    "noise": "nndl-noise", "batch_size": "nndl-batch-size", "train_percent": "nndl-train-percent",
    "more_layers": "nndl-more-layers", "fewer_layers": "nndl-fewer-layers",
}
STYLE = """<style>
.nndl-playground .nndl-heading { font-weight: 600; letter-spacing: .04em; color: #555; margin: 6px 0 2px 0; }
.nndl-playground .nndl-panel { padding: 4px 10px; border-left: 1px solid #e4e4e4; }
.nndl-playground .nndl-big { font-size: 15px; }
</style>"""


def _with(options, value):
    """The options of a control, with ``value`` added in order if a trainer was built with another one."""
    if value in options:
        return tuple(options)
    numbers = sorted([o for o in options if o is not None] + [value])
    return tuple(numbers) + ((None,) if None in options else ())


def _heading(text):
    return widgets.HTML(f"<div class='nndl-heading'>{text}</div>")


class Playground:
    """The page: controls around a Trainer, redrawn after every change and every frame.

    ``Playground()`` starts from Trainer's defaults; ``Playground(trainer)`` or ``Playground(**settings)``
    from others. Every control is an attribute (``dataset``, ``noise``, ``learning_rate``,
    ``feature_buttons[name]``, ``step_button``, ``play_button`` ...), so code can drive the page as a
    click would; ``set_hidden([8, 8])`` sets the hidden layers; ``step(epochs)`` and ``frame()`` train.
    """

    def __init__(self, trainer=None, **settings):
        if trainer is not None and settings:
            raise ValueError("pass a Trainer or its settings, not both")
        self.trainer = trainer if trainer is not None else Trainer(**settings)
        t = self.trainer
        labelled = {"description_width": "initial"}
        narrow, small = widgets.Layout(width="250px"), widgets.Layout(width="32px", padding="0")
        # -- run controls and hyperparameters (top bar)
        self.play_button = widgets.ToggleButton(value=False, description="play", icon="play",
                                                tooltip="train continuously", layout=widgets.Layout(width="90px"))
        self.step_button = widgets.Button(description="step", icon="step-forward", tooltip="train one epoch",
                                          layout=widgets.Layout(width="80px"))
        self.reset_button = widgets.Button(description="reset", icon="refresh", tooltip="new random weights",
                                           layout=widgets.Layout(width="80px"))
        self.epoch_label = widgets.HTML()

        def dropdown(options, value, description, width="170px"):
            return widgets.Dropdown(options=options, value=value, description=description, style=labelled,
                                    layout=widgets.Layout(width=width))

        self.learning_rate = dropdown(_with(LEARNING_RATES, t.lr), t.lr, "learning rate")
        self.optimizer = dropdown([(OPTIMIZER_LABELS.get(k, k), k) for k in OPTIMIZERS], t.optimizer_name,
                                  "optimizer", "160px")
        self.activation = dropdown([(ACTIVATION_LABELS.get(k, k), k) for k in ACTIVATIONS], t.activation,
                                   "activation")
        self.penalty = dropdown(PENALTIES, t.penalty, "regularization")
        self.penalty_rate = dropdown(_with(PENALTY_RATES, t.penalty_rate), t.penalty_rate,
                                     "regularization rate", "200px")
        # -- data
        self.dataset = widgets.ToggleButtons(options=list(DATA_SETS), value=t.dataset, style={"button_width": "84px"})
        self.train_percent = widgets.IntSlider(value=t.train_percent, min=10, max=90, step=10,
                                               description="training %", layout=narrow)
        self.noise = widgets.IntSlider(value=t.noise, min=0, max=50, step=5, description="noise %", layout=narrow)
        self.batch_size = widgets.SelectionSlider(   # the value 0 stands for None, the whole training set
            options=[("all", 0) if b is None else (str(b), b) for b in _with(BATCH_SIZES, t.batch_size)],
            value=t.batch_size or 0, description="batch size", layout=narrow)
        self.regenerate = widgets.Button(description="regenerate", icon="random",
                                         tooltip="draw a new sample of the data set")
        # -- features and hidden layers
        self.feature_buttons = {name: widgets.ToggleButton(value=name in t.features, description=label,
                                                           layout=widgets.Layout(width="64px"))
                                for name, (label, _) in FEATURES.items()}
        self.fewer_layers = widgets.Button(description="−", tooltip="remove a hidden layer", layout=small)
        self.more_layers = widgets.Button(description="+", tooltip="add a hidden layer", layout=small)
        self.layers_label = widgets.HTML()
        self.width_controls = widgets.HBox(layout=widgets.Layout(margin="0"))
        # -- output
        self.loss_label = widgets.HTML()
        self.loss_view = widgets.Image(format="png", layout=widgets.Layout(
            width=f"{BOUNDARY_PX}px", height=f"{LOSS_PX}px", object_fit="contain"))
        self.boundary_view = widgets.Image(format="jpeg", layout=widgets.Layout(
            width=f"{BOUNDARY_PX}px", height=f"{BOUNDARY_PX}px", object_fit="contain"))
        self.network_view = widgets.Image(format="jpeg", layout=widgets.Layout(width="auto", align_self="flex-start"))
        self.show_test = widgets.Checkbox(value=False, description="show test data", indent=False,
                                          layout=widgets.Layout(width="auto"))
        self.discretize = widgets.Checkbox(value=False, description="discretize output", indent=False,
                                           layout=widgets.Layout(width="auto"))
        self.status = widgets.HTML()
        self._tag_and_connect()
        self._task = None
        self._frame_times = collections.deque(maxlen=40)
        self.message = ""
        self.widget = self._layout()
        self._update_layer_controls()
        self.render()

    def _tag_and_connect(self):
        """CSS classes (the browser test finds the controls by them), then the callbacks."""
        for name, css in CSS_CLASSES.items():
            getattr(self, name).add_class(css)
        for name, button in self.feature_buttons.items():
            button.add_class("nndl-feature-" + name.replace(" ", "-").replace("^", ""))

        t = self.trainer
        self.play_button.observe(self._on_play, names="value")
        self.step_button.on_click(lambda _: self.step())
        self.reset_button.on_click(lambda _: self._rebuild(new_weights=True))
        self.regenerate.on_click(lambda _: self._new_data(redraw=True))
        for w in (self.dataset, self.noise, self.train_percent):
            w.observe(lambda _: self._new_data(redraw=False), names="value")
        for w in (self.activation, self.optimizer, *self.feature_buttons.values()):
            w.observe(lambda _: self._rebuild(), names="value")
        for w in (self.learning_rate, self.penalty, self.penalty_rate, self.batch_size):
            w.observe(lambda _: self._sync_hyperparameters(), names="value")
        for w in (self.show_test, self.discretize):
            w.observe(lambda _: self.render(), names="value")
        self.fewer_layers.on_click(lambda _: self.set_hidden(t.hidden[:-1]))
        self.more_layers.on_click(lambda _: self.set_hidden(t.hidden + [t.hidden[-1] if t.hidden else 4]))

    def _layout(self):
        top = widgets.HBox([self.play_button, self.step_button, self.reset_button, self.epoch_label,
                            self.learning_rate, self.optimizer, self.activation, self.penalty, self.penalty_rate],
                           layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        data = widgets.VBox([_heading("DATA"), self.dataset, self.noise, self.train_percent, self.batch_size,
                             self.regenerate], layout=widgets.Layout(width="290px"))
        network = widgets.VBox([
            _heading("FEATURES"), widgets.HBox(list(self.feature_buttons.values()),
                                               layout=widgets.Layout(flex_flow="row wrap")),
            _heading("HIDDEN LAYERS"),
            widgets.HBox([self.fewer_layers, self.more_layers, self.layers_label],
                         layout=widgets.Layout(align_items="center")),
            self.width_controls, self.network_view], layout=widgets.Layout(min_width="460px"))
        network.add_class("nndl-panel")
        output = widgets.VBox([_heading("OUTPUT"), self.loss_label, self.loss_view, self.boundary_view,
                               widgets.HBox([self.show_test, self.discretize]), self.status])
        output.add_class("nndl-panel")
        page = widgets.VBox([widgets.HTML(STYLE), top, widgets.HBox([data, network, output])])
        page.add_class("nndl-playground")
        return page

    def _ipython_display_(self):
        display(self.widget)

    # -- controls -> trainer
    def _sync_hyperparameters(self):
        t = self.trainer
        t.lr, t.penalty = self.learning_rate.value, self.penalty.value
        t.penalty_rate, t.batch_size = self.penalty_rate.value, self.batch_size.value or None

    def _read_structure(self):
        t = self.trainer
        t.activation, t.optimizer_name = self.activation.value, self.optimizer.value
        t.features = [name for name, b in self.feature_buttons.items() if b.value]
        t.dataset, t.noise, t.train_percent = self.dataset.value, self.noise.value, self.train_percent.value
        self._sync_hyperparameters()

    def _rebuild(self, new_weights=False):
        self._read_structure()
        if not self.trainer.features:
            self.message = "Switch on at least one feature."
            self.render()
            return
        self.message = ""
        self.trainer.reset(new_weights=new_weights)
        self.render()

    def _new_data(self, redraw):
        self._read_structure()
        if self.trainer.features:
            self.trainer.new_data(redraw=redraw)
        self.render()

    def set_hidden(self, widths):
        """Hidden-layer widths, e.g. [8, 8]; [] is logistic regression on the features."""
        self.trainer.hidden = [min(max(int(w), 1), MAX_NEURONS) for w in widths][:MAX_LAYERS]
        self._update_layer_controls()
        self._rebuild()

    def _update_layer_controls(self):
        widths = self.trainer.hidden
        self.layers_label.value = f"<b>{len(widths)}</b> hidden layer{'s' if len(widths) != 1 else ''}"
        self.fewer_layers.disabled = not widths
        self.more_layers.disabled = len(widths) >= MAX_LAYERS
        button = widgets.Layout(width="28px", padding="0")
        groups = []
        for l, n in enumerate(widths):
            minus = widgets.Button(description="−", tooltip=f"fewer neurons in layer {l + 1}", layout=button,
                                   disabled=n <= 1)
            plus = widgets.Button(description="+", tooltip=f"more neurons in layer {l + 1}", layout=button,
                                  disabled=n >= MAX_NEURONS)
            minus.on_click(lambda _, l=l: self._change_width(l, -1))
            plus.on_click(lambda _, l=l: self._change_width(l, +1))
            minus.add_class(f"nndl-fewer-neurons-{l + 1}")
            plus.add_class(f"nndl-more-neurons-{l + 1}")
            label = widgets.HTML(f"<b>{n}</b>", layout=widgets.Layout(width="18px"))
            label.add_class(f"nndl-neurons-{l + 1}")
            groups.append(widgets.HBox([minus, label, plus], layout=widgets.Layout(
                width=f"{COLUMN}px", margin="0", justify_content="center", align_items="center")))
        # each group sits above its column of the network drawing
        spacer = widgets.Box(layout=widgets.Layout(width=f"{LEFT + COLUMN + NODE_PX // 2 - COLUMN // 2}px",
                                                   margin="0"))
        self.width_controls.children = [spacer] + groups

    def _change_width(self, layer, delta):
        widths = list(self.trainer.hidden)
        widths[layer] += delta
        self.set_hidden(widths)

    # -- training and drawing
    def step(self, epochs=1):
        """Train ``epochs`` epochs (the step button trains one), then redraw."""
        for _ in range(int(epochs)):
            self.trainer.run_epoch()
        self.render()

    def frame(self):
        """Train whole epochs for about TRAIN_BUDGET_S (at least one), then draw everything."""
        start = time.perf_counter()
        while True:
            self.trainer.run_epoch()
            if self.trainer.diverged or time.perf_counter() - start > TRAIN_BUDGET_S:
                break
        self.render()
        self._frame_times.append(time.perf_counter())

    @property
    def fps(self):
        times = self._frame_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0

    def render(self):
        t = self.trainer
        proba, hidden_maps = t.grid_outputs()
        test = (t.X_test, t.y_test) if self.show_test.value else (None, None)
        self.boundary_view.value = encode(draw_boundary(proba, t.X_train, t.y_train, *test,
                                                        discretize=self.discretize.value))
        self.network_view.value = encode(draw_network(t.model.params, t.features, hidden_maps, proba))
        self.loss_view.value = encode(draw_losses(t.history), "png")
        self.epoch_label.value = f"<span class='nndl-big'>epoch <b>{t.epoch:06,d}</b></span>"
        train, test_loss = t.history["train"][-1], t.history["test"][-1]
        self.loss_label.value = (f"test loss <b>{test_loss:.3f}</b> &nbsp; training loss <b>{train:.3f}</b>"
                                 f" &nbsp; <span style='color:#888'>(test accuracy {t.accuracy():.0%})</span>")
        if t.diverged:
            self.message = "The loss diverged: lower the learning rate, then press reset."
        notes = [self.message] if self.message else []
        if self.play_button.value and self.fps:
            notes.append(f"{self.fps:.0f} frames/s")
        self.status.value = f"<span style='color:#888'>{' · '.join(notes)}</span>"

    def _on_play(self, change):
        self.play_button.description, self.play_button.icon = ("pause", "pause") if change.new else ("play", "play")
        if not change.new:
            self.render()  # drop the frame rate from the status line
        elif self._task is None or self._task.done():
            self._frame_times.clear()
            try:
                self._task = asyncio.ensure_future(self._play())
            except RuntimeError:  # no event loop (plain Python): step instead
                self.play_button.value = False
                self.message = "play needs a running kernel event loop; use step"
                self.render()

    async def _play(self):
        try:
            while self.play_button.value:
                start = time.perf_counter()
                self.frame()
                if self.trainer.diverged:
                    self.play_button.value = False
                await asyncio.sleep(max(FRAME_S - (time.perf_counter() - start), 0.005))
        except Exception as error:  # show it on the page instead of losing it in the kernel log
            self.play_button.value = False
            self.message = f"stopped: {type(error).__name__}: {error}"
            self.render()
