"""One house style, a live training curve, decision boundaries, image grids and mosaics."""
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


def cjk_font() -> str | None:
    """Register the CJK font the course installs (Noto Sans SC) with matplotlib; return its family name.

    ``requirements.txt`` installs it from PyPI (the package ``pylopdf-fonts-zh-cn``, SIL Open Font
    License), so Chinese labels render the same on Linux, macOS and Windows without a system font.
    Returns ``None`` when the package is missing (the labels then show empty boxes).
    """
    try:
        from pylopdf_fonts_zh_cn import sans_path
    except ImportError:
        return None
    from matplotlib import font_manager

    path = sans_path()
    if not path.exists():
        return None
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def use_style(dpi: int = 80) -> None:
    """The course's matplotlib style: readable, compact, small PNGs in the notebooks.

    Text is set in DejaVu Sans, matplotlib's own font, and any character it lacks (Chinese, in
    chapters 6, 8 and 15) falls back glyph by glyph to the CJK font of ``cjk_font``.
    """
    cjk = cjk_font()
    # a list of families, not the alias "sans-serif": matplotlib falls back glyph by glyph only
    # along an explicit list
    mpl.rcParams["font.family"] = ["DejaVu Sans"] + ([cjk] if cjk else [])
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


def _as_image_stack(images, what: str) -> np.ndarray:
    """(N, H, W), (N, 1, H, W) or (N, H*W) with square images -> (N, H, W)."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            raise ValueError(f"{what}: cannot read rows of length {arr.shape[1]} as square images; "
                             "pass (N, H, W) or (N, 1, H, W)")
        arr = arr.reshape(len(arr), side, side)
    elif arr.ndim != 3:
        raise ValueError(f"{what}: expected images of shape (N, H, W), (N, 1, H, W) or (N, H*W), "
                         f"got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{what}: expected numbers, got dtype {arr.dtype}")
    return arr


_NORMALIZATIONS = (None, "max-abs", "min-max")


def tile_images(images, ncols: int | None = None, *, pad: int = 0, pad_value: float = 0.0, margin: int = 0,
                normalize: str | None = None) -> np.ndarray:
    """Tile many small images into one 2-D array, to show with a single ``imshow``.

    One image artist instead of dozens draws much faster, so a slider can redraw a
    whole grid of digits in place (``artist.set_data(tile_images(...))``).

    Parameters
    ----------
    images : (N, H, W), (N, 1, H, W) or (N, H*W) array (rows of flat square images,
        as MNIST is often stored), or a list of such arrays, one per row of the mosaic
        (rows may differ in length; short rows are filled with ``pad_value``).
    ncols : images per row for an array (default: ``ceil(sqrt(N))``, a square-ish grid);
        the last row is filled with ``pad_value`` when N is not a multiple. For a list of
        rows it defaults to the longest row.
    pad : pixels of ``pad_value`` between neighbouring images.
    pad_value : value of the gaps and empty cells; ``np.nan`` draws them transparent.
    margin : pixels of ``pad_value`` around the whole mosaic.
    normalize : None (values as given), ``"max-abs"`` (each image divided by its largest
        magnitude, into [-1, 1]: kernels, with a diverging colour map and vmin=-1, vmax=1)
        or ``"min-max"`` (each image mapped onto [0, 1]). A constant image maps to 0.

    Returns
    -------
    (rows * (H + pad) - pad + 2 * margin, ncols * (W + pad) - pad + 2 * margin) floating-point
    array, in the images' precision (at least float32).
    """
    if normalize not in _NORMALIZATIONS:
        raise ValueError(f"tile_images: unknown normalize={normalize!r}; use one of {_NORMALIZATIONS}")
    if int(pad) != pad or pad < 0 or int(margin) != margin or margin < 0:
        raise ValueError(f"tile_images: pad and margin must be integers >= 0, got pad={pad}, margin={margin}")
    if ncols is not None and (int(ncols) != ncols or ncols < 1):
        raise ValueError(f"tile_images: ncols must be a positive integer, got {ncols}")
    pad, margin = int(pad), int(margin)
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("tile_images: got an empty list of rows")
        rows = [_as_image_stack(row, f"tile_images (row {i})") for i, row in enumerate(images)]
        longest = max(len(row) for row in rows)
        if ncols is None:
            ncols = longest
        elif ncols < longest:
            raise ValueError(f"tile_images: ncols={ncols} is shorter than the longest row ({longest} images)")
        ncols = int(ncols)
    else:
        stack = _as_image_stack(images, "tile_images")
        if ncols is None:
            ncols = max(1, int(np.ceil(np.sqrt(len(stack)))))
        ncols = int(ncols)
        rows = [stack[i:i + ncols] for i in range(0, len(stack), ncols)] or [stack]
    if sum(len(row) for row in rows) == 0:
        raise ValueError("tile_images: no images to tile")
    shapes = {row.shape[1:] for row in rows if len(row)}
    if len(shapes) > 1:
        raise ValueError(f"tile_images: all images must have the same height and width, got {sorted(shapes)}")
    (h, w), = shapes
    dtype = np.result_type(*(row.dtype for row in rows), np.float32)
    out = np.full((len(rows) * (h + pad) - pad + 2 * margin, ncols * (w + pad) - pad + 2 * margin),
                  pad_value, dtype=dtype)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            image = image.astype(dtype, copy=False)
            if normalize == "max-abs":
                peak = np.abs(image).max()
                image = image / peak if peak > 0 else np.zeros_like(image)
            elif normalize == "min-max":
                low, high = image.min(), image.max()
                image = (image - low) / (high - low) if high > low else np.zeros_like(image)
            top, left = margin + r * (h + pad), margin + c * (w + pad)
            out[top:top + h, left:left + w] = image
    return out


def figure_to_png(fig, dpi: int | None = None, close: bool = True) -> bytes:
    """Render a figure to PNG bytes, e.g. for an ``ipywidgets.Image`` a slider redraws in place."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or mpl.rcParams["savefig.dpi"])
    if close:
        plt.close(fig)
    return buf.getvalue()
