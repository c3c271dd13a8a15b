"""PyTorch code taught in notebooks/10b_multitask_and_meta_learning.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save torch`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import torch


def torch_task_mlp(x, params):
    """The batched ReLU MLP of task_mlp_forward in PyTorch: x (T, N, D), params W1 (T, D, M1), b1 (T, M1), ..."""
    num_layers = len(params) // 2
    for l in range(1, num_layers + 1):
        x = x @ params[f"W{l}"] + params[f"b{l}"][:, None, :]
        if l < num_layers:
            x = torch.relu(x)
    return x


def maml_meta_loss_torch(params, x_support, y_support, x_query, y_query, *, inner_lr, steps=1, first_order=False):
    """MAML's meta-objective, the mean query MSE after `steps` inner steps, as a differentiable tensor of the shared
    params (tensors without a task axis). first_order=True detaches the inner gradients (FO-MAML)."""
    n_tasks = len(x_support)
    adapted = {k: v.expand(n_tasks, *v.shape) for k, v in params.items()}
    for _ in range(steps):
        support_loss = ((torch_task_mlp(x_support, adapted) - y_support) ** 2).mean(dim=(1, 2)).sum()
        grads = torch.autograd.grad(support_loss, list(adapted.values()), create_graph=not first_order)
        adapted = {k: v - inner_lr * g for (k, v), g in zip(adapted.items(), grads)}
    return ((torch_task_mlp(x_query, adapted) - y_query) ** 2).mean(dim=(1, 2)).mean()
