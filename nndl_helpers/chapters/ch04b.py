"""NumPy code taught in notebooks/04b_automatic_differentiation.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """Centred-difference gradient of the scalar ``f()`` with respect to the float64 array ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored: ``f`` must read ``x`` (a closure),
    so the same code checks any parameter array. Each entry costs two evaluations of ``f``, and the
    estimate is off by O(h^2) (truncation) plus O(u |f| / h) (rounding, u = 1.1e-16 in float64).
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays, got {x.dtype}")
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old                                  # restore before the next entry
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5):
    """Centred-difference gradient of ``sum(f() * dout)``: checks a layer's backward for any upstream ``dout``.

    A layer maps an array to an array, and its backward turns dL/d(out) into dL/dx. With the scalar
    L = sum(out * dout), dL/d(out) is exactly ``dout``, so the scalar checker above applies.
    """
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def topological_order(root):
    """Every node `root` depends on, itself included, each listed after all of its parents.

    A node is anything with a `_parents` tuple (Value, Tensor). Depth-first search with an explicit
    stack, so a graph thousands of nodes deep does not hit Python's recursion limit.
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)                    # all its parents are in `order` already
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))            # comes back to `node` after its parents
            stack.extend((parent, False) for parent in node._parents)
    return order


def _as_value(x):
    return x if isinstance(x, Value) else Value(x)    # a constant: a leaf whose gradient is not used


class Value:
    """A scalar node of a computational graph: data, grad = dL/d(node), the parents it was computed
    from and, for each parent, the local derivative d(node)/d(parent), a number."""

    def __init__(self, data, parents=(), local_grads=(), op="", label=""):
        self.data, self.grad, self.op, self.label = float(data), 0.0, op, label
        self._parents, self._local_grads = tuple(parents), tuple(local_grads)

    def backward(self):
        """Reverse mode: add d self / d node to the grad of every node self depends on."""
        order = topological_order(self)
        for node in order:
            if node._parents:                          # intermediate nodes restart; inputs accumulate
                node.grad = 0.0
        self.grad += 1.0
        for node in reversed(order):                   # children before parents
            for parent, local in zip(node._parents, node._local_grads):
                parent.grad += node.grad * local       # the chain rule on one edge

    def __add__(self, other):
        other = _as_value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __sub__(self, other):
        return self + -_as_value(other)

    def __mul__(self, other):
        other = _as_value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __truediv__(self, other):
        other = _as_value(other)
        return Value(self.data / other.data, (self, other), (1 / other.data, -self.data / other.data**2), "/")

    def __pow__(self, k):                              # k: a constant number
        return Value(self.data**k, (self,), (k * self.data ** (k - 1),), f"**{k}")

    def __neg__(self):
        return Value(-self.data, (self,), (-1.0,), "neg")

    __radd__, __rmul__ = __add__, __mul__

    def __rsub__(self, other):
        return _as_value(other) - self

    def __rtruediv__(self, other):
        return _as_value(other) / self

    def exp(self):
        return Value(np.exp(self.data), (self,), (np.exp(self.data),), "exp")

    def log(self):
        return Value(np.log(self.data), (self,), (1 / self.data,), "log")

    def tanh(self):
        return Value(np.tanh(self.data), (self,), (1 - np.tanh(self.data) ** 2,), "tanh")

    def relu(self):
        return Value(max(self.data, 0.0), (self,), (float(self.data > 0),), "relu")


def _unbroadcast(grad, shape):
    """Sum grad down to an operand's shape: over the leading axes it lacks and over its axes of length 1."""
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    return grad.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


class Tensor:
    """An array node of a computational graph: data (a NumPy array, wrapped, not copied), grad =
    dL/d(node), the parents and, for each parent, a vector-Jacobian product: a function that maps
    g = dL/d(node) to the parent's share g^T J of the gradient, the Jacobian J never formed."""

    def __init__(self, data, parents=(), vjps=(), op=""):
        data = np.asarray(data)
        self.data = data if data.dtype.kind == "f" else data.astype(np.float64)
        self.grad = np.zeros_like(self.data)
        self._parents, self._vjps, self.op = tuple(parents), tuple(vjps), op

    def backward(self, grad=None):
        """Value.backward with a VJP on each edge; grad = dL/d(self), by default 1 for a scalar."""
        grad = np.ones_like(self.data) if grad is None and self.data.size == 1 else grad
        if np.shape(grad) != self.data.shape:
            raise ValueError(f"backward: grad must have shape {self.data.shape} (none for a scalar), "
                             f"got {np.shape(grad)}")
        order = topological_order(self)
        for node in order:
            if node._parents:
                node.grad = np.zeros_like(node.data)
        self.grad += grad
        for node in reversed(order):
            for parent, vjp in zip(node._parents, node._vjps):
                parent.grad += vjp(node.grad)

    def __add__(self, other):
        a, b = self, _as_tensor(other, self)
        return Tensor(a.data + b.data, (a, b), (lambda g: _unbroadcast(g, a.data.shape),
                                                lambda g: _unbroadcast(g, b.data.shape)), "+")

    def __mul__(self, other):
        a, b = self, _as_tensor(other, self)
        return Tensor(a.data * b.data, (a, b), (lambda g: _unbroadcast(g * b.data, a.data.shape),
                                                lambda g: _unbroadcast(g * a.data, b.data.shape)), "*")

    def __matmul__(self, other):
        a, b = self, _as_tensor(other, self)
        if a.data.ndim != 2 or b.data.ndim != 2:
            raise ValueError(f"matmul: need two 2-D arrays, got shapes {a.data.shape} and {b.data.shape}")
        return Tensor(a.data @ b.data, (a, b), (lambda g: g @ b.data.T, lambda g: a.data.T @ g), "@")

    __radd__, __rmul__ = __add__, __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + -_as_tensor(other, self)

    def __rsub__(self, other):
        return _as_tensor(other, self) + -self


from nndl_helpers.chapters.ch03 import softmax_cross_entropy
from nndl_helpers.chapters.ch04a import ACTIVATIONS


def _as_tensor(x, like):
    """x itself if it is a Tensor, otherwise a constant leaf with like's dtype (float32 stays float32)."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=like.data.dtype))


def activation(x, name):
    """ACTIVATIONS[name] as one node: its forward gives the value, its backward is the VJP."""
    forward, backward = ACTIVATIONS[name]
    a, cache = forward(x.data)
    return Tensor(a, (x,), (lambda g: backward(g, cache),), name)


def reduce_sum(x, axis=None, keepdims=False):
    """Sum over axis (every axis by default); the VJP copies g back along the summed axes."""
    kept = np.sum(x.data, axis=axis, keepdims=True).shape
    return Tensor(np.sum(x.data, axis=axis, keepdims=keepdims), (x,),
                  (lambda g: np.broadcast_to(np.reshape(g, kept), x.data.shape),), "sum")


def reduce_mean(x, axis=None, keepdims=False):
    """Mean over axis: the sum times 1 / (number of summed entries), two nodes."""
    total = reduce_sum(x, axis, keepdims)
    return total * (total.data.size / x.data.size)


def reshape(x, shape):
    return Tensor(np.reshape(x.data, shape), (x,), (lambda g: np.reshape(g, x.data.shape),), "reshape")


def cross_entropy(logits, y):
    """Mean cross-entropy of int labels y (N,) under softmax(logits (N, C)): one node, whose value and
    gradient (softmax - one_hot(y)) / N come from chapter 3's softmax_cross_entropy (log-softmax inside)."""
    loss, dlogits = softmax_cross_entropy(logits.data, y)
    return Tensor(np.asarray(loss, dtype=logits.data.dtype), (logits,), (lambda g: g * dlogits,), "cross_entropy")


def autodiff_loss_and_grads(model, X, y):
    """model.loss(X, y) for a softmax MLP, computed by the Tensor engine: (loss, grads keyed like params)."""
    if model.output != "softmax":
        raise ValueError(f"autodiff_loss_and_grads: written for output='softmax', got {model.output!r}")
    params = {name: Tensor(p) for name, p in model.params.items()}      # wraps the arrays, no copy
    a = Tensor(np.asarray(X, dtype=model.params["W1"].dtype))
    for l in range(1, model.num_layers + 1):
        z = a @ params[f"W{l}"] + params[f"b{l}"]
        a = activation(z, model.activation) if l < model.num_layers else z
    loss = cross_entropy(z, y)
    if model.l2:
        for l in range(1, model.num_layers + 1):
            loss = loss + 0.5 * model.l2 * reduce_sum(params[f"W{l}"] * params[f"W{l}"])
    loss.backward()
    return float(loss.data), {name: t.grad for name, t in params.items()}
