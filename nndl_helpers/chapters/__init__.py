"""Code the chapters teach and later chapters reuse, generated from the notebooks' ``#@save`` cells.

``chNN`` holds notebook NN's NumPy code and never imports PyTorch; ``chNN_torch`` holds its
PyTorch code. Do not edit these modules: change the notebook and run
``python -m nndl_helpers.nbtools export`` (see ``nndl_helpers.nbtools`` and CONTRIBUTING.md).
"""
