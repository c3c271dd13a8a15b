"""Shared plumbing for the NNDL notebooks: data, plots, devices, profiles, gradient checks.

Teaching code lives in the notebooks. This package only holds what every
notebook needs and nobody needs to study: downloading and verifying data,
plotting, choosing a device, seeding, and checking gradients. Code a notebook
teaches and a later one reuses is exported, verbatim, to ``nndl_helpers.chapters.chNN``
(see ``nndl_helpers.nbtools``).
"""
from .config import (
    SectionTimer,
    amp_dtype,
    autocast,
    best_device,
    describe,
    get_profile,
    grad_scaler,
    seed_everything,
    speed_checks_enabled,
)
from .data import (
    CheckpointError,
    DATASETS,
    DataError,
    FASHION_MNIST_CLASSES,
    fetch,
    load_diabetes,
    load_mnist,
    load_tang_poems,
    load_text,
    load_translation_pairs,
    make_digit_canvases,
    make_linear_regression,
    make_sine_regression,
    make_toy_2d,
    minibatches,
    read_idx,
    to_tensors,
    train_test_split,
)
from .metrics import metrics_file, record


def load_checkpoint(name: str, device="cpu"):
    """Load course checkpoint `name` (see ``nndl_helpers.pretrained.load_checkpoint``): (model, info)."""
    from .pretrained import load_checkpoint as load   # imported on first use: it brings in PyTorch

    return load(name, device)


from .gradcheck import (
    autograd_gradients,
    check_gradients,
    compare_with_autograd,
    numerical_gradient,
    numerical_gradient_array,
    rel_error,
    verdict_line,
)
from .plot import PALETTE, LiveCurve, decision_boundary, figure_to_png, image_grid, tile_images, use_style

__all__ = [
    "SectionTimer", "amp_dtype", "autocast", "best_device", "grad_scaler", "metrics_file", "record", "describe", "get_profile", "seed_everything", "speed_checks_enabled",
    "CheckpointError", "load_checkpoint",
    "DATASETS", "DataError", "FASHION_MNIST_CLASSES", "fetch", "load_diabetes", "load_mnist",
    "load_tang_poems", "load_text", "load_translation_pairs", "make_digit_canvases", "make_linear_regression",
    "make_sine_regression", "make_toy_2d", "minibatches", "read_idx", "to_tensors", "train_test_split",
    "autograd_gradients", "check_gradients", "compare_with_autograd", "numerical_gradient", "numerical_gradient_array",
    "rel_error", "verdict_line",
    "PALETTE", "LiveCurve", "decision_boundary", "figure_to_png", "image_grid", "tile_images", "use_style",
]
