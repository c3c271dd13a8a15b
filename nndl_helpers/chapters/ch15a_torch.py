"""PyTorch code taught in notebooks/15a_language_models_and_seq2seq.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import torch


def torch_pairs(data, device):
    """pad_pairs' arrays as tensors: the ids moved to `device` once, the lengths on the CPU (as
    pack_padded_sequence wants them)."""
    src, src_len, tgt_in, tgt_out, tgt_len = (torch.as_tensor(a) for a in data)
    return src.to(device), src_len, tgt_in.to(device), tgt_out.to(device), tgt_len
