"""One house style, a live training curve, decision boundaries and image grids."""
from __future__ import annotations

import io
import time
from typing import Callable, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

#: Colours used for classes across the course (colour-blind friendly).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
           "#56B4E9", "#F0E442", "#000000", "#999999", "#882255")


def use_style(dpi: int = 80) -> None:
    """The course's matplotlib style: readable, compact, small PNGs in the notebooks."""
    mpl.rcParams.update({
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "figure.figsize": (6.0, 3.6),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "image.cmap": "viridis",
    })


class LiveCurve:
    """A training-curve figure that redraws itself in place in JupyterLab.

        curve = LiveCurve(["train loss", "val loss"], xlabel="epoch")
        for epoch in range(n):
            ...
            curve.update(epoch, **{"train loss": l1, "val loss": l2})
        curve.close()   # final draw, figure stays in the output

    Series can be grouped into panels: ``LiveCurve({"loss": ["train", "val"],
    "accuracy": ["val acc"]})``. Redraws are throttled to ``min_interval`` seconds
    so a fast loop is not slowed down by plotting. Outside a notebook it only
    records the values (``curve.history``).
    """

    def __init__(self, series: Sequence[str] | dict[str, Sequence[str]], *, xlabel: str = "step",
                 title: str | None = None, min_interval: float = 0.5, logy: bool = False,
                 figsize: tuple[float, float] | None = None):
        self.panels = {"": list(series)} if not isinstance(series, dict) else {k: list(v) for k, v in series.items()}
        self.history: dict[str, tuple[list[float], list[float]]] = {
            name: ([], []) for names in self.panels.values() for name in names}
        self.xlabel, self.title, self.logy = xlabel, title, logy
        self.min_interval = min_interval
        self._last_draw = 0.0
        n = len(self.panels)
        self.fig, axes = plt.subplots(1, n, figsize=figsize or (4.2 * n + 0.8, 3.2), squeeze=False)
        self.axes = dict(zip(self.panels, axes[0]))
        self.lines = {}
        for panel, names in self.panels.items():
            ax = self.axes[panel]
            for name in names:
                (self.lines[name],) = ax.plot([], [], label=name)
            ax.set_xlabel(xlabel)
            if panel:
                ax.set_ylabel(panel)
            if logy:
                ax.set_yscale("log")
            ax.legend(loc="best")
        if title:
            self.fig.suptitle(title)
        self.fig.tight_layout()
        plt.close(self.fig)  # shown only through the display handle below
        self._handle = None
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self._handle = display(self.fig, display_id=True)
        except ImportError:
            pass

    def update(self, x: float, **values: float) -> None:
        for name, v in values.items():
            if name not in self.history:
                raise KeyError(f"unknown series {name!r}; LiveCurve has {list(self.history)}")
            xs, ys = self.history[name]
            xs.append(float(x))
            ys.append(float(v))
        if time.perf_counter() - self._last_draw >= self.min_interval:
            self.draw()

    def draw(self) -> None:
        for name, line in self.lines.items():
            line.set_data(*self.history[name])
        for ax in self.axes.values():
            ax.relim()
            ax.autoscale_view()
        if self._handle is not None:
            self._handle.update(self.fig)
        self._last_draw = time.perf_counter()

    def close(self) -> None:
        """Draw the final state (call once the loop ends)."""
        self.draw()


def decision_boundary(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray,
                      ax=None, *, resolution: int = 200, margin: float = 0.5, proba: bool = False,
                      title: str | None = None, X_test: np.ndarray | None = None,
                      y_test: np.ndarray | None = None):
    """Shade the regions ``predict`` assigns to each class over the data's bounding box.

    ``predict(grid)`` takes (M, 2) points and returns labels (M,), or with
    ``proba=True`` the probability of class 1, drawn as a continuous map.
    Test points, if given, are drawn hollow.
    """
    ax = ax or plt.gca()
    pts = X if X_test is None else np.vstack([X, X_test])
    (x0, y0), (x1, y1) = pts.min(0) - margin, pts.max(0) + margin
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.c_[gx.ravel(), gy.ravel()]
    z = np.asarray(predict(grid)).reshape(gx.shape)
    classes = np.unique(np.concatenate([y, y_test]) if y_test is not None else y)
    cmap = mpl.colors.ListedColormap(PALETTE[: max(len(classes), 2)])
    if proba:
        ax.contourf(gx, gy, z, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35, vmin=0, vmax=1)
        ax.contour(gx, gy, z, levels=[0.5], colors="k", linewidths=1)
    else:
        ax.contourf(gx, gy, z, levels=np.arange(len(classes) + 1) - 0.5, cmap=cmap, alpha=0.25)
    ax.scatter(X[:, 0], X[:, 1], c=[PALETTE[int(c) % len(PALETTE)] for c in y], s=14, edgecolors="k", linewidths=0.3)
    if X_test is not None:
        ax.scatter(X_test[:, 0], X_test[:, 1], facecolors="none", s=18, linewidths=0.8,
                   edgecolors=[PALETTE[int(c) % len(PALETTE)] for c in y_test])
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax


def image_grid(images: np.ndarray, labels: Sequence | None = None, *, ncols: int = 10,
               cmap: str = "gray", size: float = 1.0, title: str | None = None):
    """Show (N, H, W) or (N, H*W square) images in a grid, with optional captions. Returns the figure."""
    images = np.asarray(images)
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(f"cannot reshape rows of length {images.shape[1]} into square images")
        images = images.reshape(-1, side, side)
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if labels is not None else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_to_png(fig, dpi: int | None = None, close: bool = True) -> bytes:
    """Render a figure to PNG bytes, e.g. for an ``ipywidgets.Image`` a slider redraws in place."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or mpl.rcParams["savefig.dpi"])
    if close:
        plt.close(fig)
    return buf.getvalue()
