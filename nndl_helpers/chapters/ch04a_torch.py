"""PyTorch code taught in notebooks/04a_feedforward_networks.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import torch
import torch.nn.functional as F

TORCH_ACTIVATIONS = {  # name -> the reference implementation of the activation in PyTorch
    "relu": lambda z: torch.relu(z),
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
    "elu": lambda z: F.elu(z),
    "sigmoid": lambda z: torch.sigmoid(z),
    "tanh": lambda z: torch.tanh(z),
    "softplus": lambda z: F.softplus(z),
    "silu": lambda z: F.silu(z),
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "identity": lambda z: z,
}


def torch_mlp_output(model):
    """A function (x, W1, b1, ...) -> z^(L) that mirrors model.forward with torch operations."""
    act = TORCH_ACTIVATIONS[model.activation]

    def out_fn(x, **params):
        a = x
        for l in range(1, model.num_layers + 1):
            z = a @ params[f"W{l}"] + params[f"b{l}"]
            a = act(z) if l < model.num_layers else z
        return z
    return out_fn


def torch_mlp_loss(model):
    """A function (x, y, W1, b1, ...) -> the loss that mirrors model.loss with torch operations, L2 included."""
    out_fn = torch_mlp_output(model)

    def loss_fn(x, y, **params):
        z = out_fn(x, **params)
        if model.output == "softmax":
            data_loss = F.cross_entropy(z, y)
        elif model.output == "sigmoid":
            data_loss = F.binary_cross_entropy_with_logits(z[:, 0], y.double())
        else:
            data_loss = 0.5 * F.mse_loss(z, y.reshape(z.shape), reduction="sum") / len(z)
        penalty = sum((params[f"W{l}"] ** 2).sum() for l in range(1, model.num_layers + 1))
        return data_loss + 0.5 * model.l2 * penalty
    return loss_fn
