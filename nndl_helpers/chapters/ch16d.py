"""NumPy code taught in notebooks/16d_onnx_deployment.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import inspect

import numpy as np
import onnx
from onnx import numpy_helper

from nndl_helpers.chapters.ch03 import softmax
from nndl_helpers.chapters.ch04a import gelu_forward, relu_forward
from nndl_helpers.chapters.ch05a import conv2d_forward, max_pool_forward
from nndl_helpers.chapters.ch07b import layernorm_forward

#: ONNX operator name -> NumPy function(*inputs, **attributes) returning the output array.
ONNX_OPS = {}


def onnx_op(op_type):
    """Decorator: register a NumPy function as the implementation of the ONNX operator `op_type`."""
    def register(fn):
        ONNX_OPS[op_type] = fn
        return fn
    return register


def _same(values, what, op):
    """The one value of a per-axis attribute (pads, strides, ...) that the chapter-5 layers support."""
    if len(set(values)) != 1:
        raise NotImplementedError(f"{op}: {what}={list(values)} differ per axis; this interpreter supports "
                                  f"only equal {what} on every axis (chapter 5's layers take one number)")
    return int(values[0])


@onnx_op("Conv")
def onnx_conv(x, W, b=None, *, kernel_shape=None, pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1),
              group=1, auto_pad="NOTSET"):
    """2-D convolution = chapter 5a's conv2d_forward (im2col and one matrix product)."""
    if x.ndim != 4 or group != 1 or auto_pad != "NOTSET":
        raise NotImplementedError(f"Conv: only 2-D, group=1, explicit pads are supported "
                                  f"(got a {x.ndim}-D input, group={group}, auto_pad={auto_pad!r})")
    b = np.zeros(W.shape[0], dtype=W.dtype) if b is None else b
    return conv2d_forward(x, W, b, stride=_same(strides, "strides", "Conv"), padding=_same(pads, "pads", "Conv"),
                          dilation=_same(dilations, "dilations", "Conv"))[0]


@onnx_op("MaxPool")
def onnx_max_pool(x, *, kernel_shape, pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1), ceil_mode=0,
                  storage_order=0, auto_pad="NOTSET"):
    """Max pooling = chapter 5a's max_pool_forward (square windows, no padding)."""
    if _same(pads, "pads", "MaxPool") or _same(dilations, "dilations", "MaxPool") != 1 or ceil_mode \
            or auto_pad != "NOTSET":
        raise NotImplementedError("MaxPool: only unpadded, undilated windows with ceil_mode=0 are supported")
    size = _same(kernel_shape, "kernel_shape", "MaxPool")
    return max_pool_forward(x, pool_size=size, stride=_same(strides, "strides", "MaxPool"))[0]   # ONNX's default stride is 1


@onnx_op("Relu")
def onnx_relu(x):
    return relu_forward(x)[0]


@onnx_op("Gemm")
def onnx_gemm(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """General matrix product Y = alpha A' B' + beta C: a fully connected layer, chapter 3's z = X W + b."""
    A, B = (A.T if transA else A), (B.T if transB else B)
    Y = A @ B if alpha == 1.0 else np.float32(alpha) * (A @ B)   # keep float32 arrays float32
    return Y if C is None else Y + (C if beta == 1.0 else np.float32(beta) * C)


@onnx_op("Reshape")
def onnx_reshape(data, shape, *, allowzero=0):
    """Reshape; in the target shape, 0 copies the input's size on that axis (unless allowzero) and -1 is inferred."""
    shape = [int(s) for s in shape]
    if not allowzero:
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return data.reshape(shape)


@onnx_op("LayerNormalization")
def onnx_layer_norm(x, scale, bias=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Layer normalisation over the last axis = chapter 7b's layernorm_forward."""
    if axis not in (-1, x.ndim - 1):
        raise NotImplementedError(f"LayerNormalization: only axis=-1 is supported, got axis={axis}")
    bias = np.zeros_like(scale) if bias is None else bias
    return layernorm_forward(x, scale, bias, eps=epsilon)[0]


@onnx_op("Softmax")
def onnx_softmax(x, *, axis=-1):
    """Softmax along `axis` = chapter 3's softmax (which works on the last axis)."""
    return np.moveaxis(softmax(np.moveaxis(x, axis, -1)), -1, axis)


@onnx_op("Gelu")
def onnx_gelu(x, *, approximate="none"):
    if approximate != "tanh":
        raise NotImplementedError(f"Gelu: only approximate='tanh' (chapter 4a's gelu_forward) is supported, "
                                  f"got approximate={approximate!r}")
    return gelu_forward(x)[0]


@onnx_op("Gather")
def onnx_gather(data, indices, *, axis=0):
    """Rows of a table by index: an embedding lookup (chapter 8b) when data is the embedding matrix."""
    n = data.shape[axis]
    if indices.size and (indices.min() < -n or indices.max() >= n):
        raise ValueError(f"Gather: indices must lie in [{-n}, {n - 1}] for an axis of size {n}, got values in "
                         f"[{indices.min()}, {indices.max()}]")
    return np.take(data, indices, axis=axis)


@onnx_op("MatMul")
def onnx_matmul(A, B):
    return np.matmul(A, B)


@onnx_op("Add")
def onnx_add(A, B):
    return A + B


@onnx_op("Mul")
def onnx_mul(A, B):
    return A * B


@onnx_op("Equal")
def onnx_equal(A, B):
    return np.equal(A, B)


@onnx_op("Where")
def onnx_where(condition, X, Y):
    return np.where(condition, X, Y)


@onnx_op("Transpose")
def onnx_transpose(data, *, perm=None):
    return np.transpose(data, perm)


@onnx_op("Shape")
def onnx_shape(data, *, start=0, end=None):
    return np.array(data.shape[start:end], dtype=np.int64)


@onnx_op("Squeeze")
def onnx_squeeze(data, axes=None):
    return np.squeeze(data, axis=None if axes is None else tuple(int(a) for a in axes))


@onnx_op("Concat")
def onnx_concat(*inputs, axis):
    return np.concatenate(inputs, axis=axis)


@onnx_op("Slice")
def onnx_slice(data, starts, ends, axes=None, steps=None):
    """data[starts:ends:steps] on the given axes; Python's slices clamp out-of-range bounds as ONNX does."""
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


@onnx_op("Range")
def onnx_range(start, limit, delta):
    return np.arange(start, limit, delta, dtype=np.result_type(start))


@onnx_op("Expand")
def onnx_expand(data, shape):
    """Broadcast data to `shape` (in both directions, as NumPy broadcasting does)."""
    return np.broadcast_to(data, np.broadcast_shapes(data.shape, tuple(int(s) for s in shape))).copy()


@onnx_op("Trilu")
def onnx_trilu(x, k=None, *, upper=1):
    """Upper (upper=1) or lower triangle of the last two axes; the causal mask of chapter 8a is a lower one."""
    k = 0 if k is None else int(k)
    return np.triu(x, k) if upper else np.tril(x, k)


_ONNX_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
                onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32, onnx.TensorProto.BOOL: np.bool_}


def graph_inputs(model):
    """The graph's real inputs (not its weights): [(name, shape, dtype)], a symbolic size as its name ('batch')."""
    weights = {t.name for t in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        shape = tuple(d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim)
        found.append((value.name, shape, np.dtype(_ONNX_DTYPES.get(tensor.elem_type, object))))
    return found


def check_feed(name, value, shape, dtype):
    """A feed for graph input `name`, or a ValueError naming the shape and dtype the graph expects."""
    value = np.asarray(value)
    want = "(" + ", ".join(str(d) for d in shape) + ")"
    fits = value.ndim == len(shape) and all(isinstance(d, str) or d == n for d, n in zip(shape, value.shape))
    if not fits:
        raise ValueError(f"input {name!r}: the graph expects shape {want}, got {value.shape}")
    if value.dtype != dtype:
        raise ValueError(f"input {name!r}: the graph expects dtype {dtype}, got {value.dtype} (shape {value.shape}); "
                         f"convert it, e.g. x.astype(np.{dtype})")
    return value


class NumpyOnnxSession:
    """A small ONNX runtime in NumPy, for the operators in ONNX_OPS.

        session = NumpyOnnxSession("lenet.onnx")          # a path or an onnx.ModelProto
        (logits,) = session.run(None, {"images": x})      # the call of onnxruntime.InferenceSession.run

    Loading fails at once, with NotImplementedError naming the node, when the graph uses an operator or
    an attribute this interpreter does not implement; run() raises ValueError for a missing input or one
    whose shape or dtype does not fit the graph's declared input.
    """

    def __init__(self, model):
        self.model = model if isinstance(model, onnx.ModelProto) else onnx.load(model)
        graph = self.model.graph
        for node in graph.node:
            if node.op_type not in ONNX_OPS or node.domain not in ("", "ai.onnx"):
                op = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
                raise NotImplementedError(f"node {node.name!r}: ONNX operator {op!r} is not supported by "
                                          f"NumpyOnnxSession; it implements {', '.join(sorted(ONNX_OPS))}")
            if len(node.output) != 1:
                raise NotImplementedError(f"node {node.name!r}: {node.op_type} with {len(node.output)} outputs "
                                          f"(only the first, main output is implemented)")
            accepted = inspect.signature(ONNX_OPS[node.op_type]).parameters
            for attr in node.attribute:
                if attr.name not in accepted or accepted[attr.name].kind != inspect.Parameter.KEYWORD_ONLY:
                    raise NotImplementedError(f"node {node.name!r}: attribute {attr.name!r} of {node.op_type} "
                                              f"is not supported by NumpyOnnxSession")
        self.weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.inputs = graph_inputs(self.model)
        self.output_names = [v.name for v in graph.output]

    def run(self, output_names, feeds):
        """Evaluate the graph node by node (ONNX stores nodes in topological order) -> list of arrays."""
        missing = [name for name, _, _ in self.inputs if name not in feeds]
        if missing:
            raise ValueError(f"missing input(s) {missing}; the graph's inputs are "
                             f"{[(n, s) for n, s, _ in self.inputs]}")
        values = dict(self.weights)
        for name, shape, dtype in self.inputs:
            values[name] = check_feed(name, feeds[name], shape, dtype)
        for node in self.model.graph.node:
            args = [values[name] if name else None for name in node.input]    # "" = optional input left out
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
            values[node.output[0]] = np.asarray(ONNX_OPS[node.op_type](*args, **attrs))
        return [values[name] for name in (output_names or self.output_names)]
