"""The NumPy ONNX interpreter of notebooks/16d_onnx_deployment.ipynb (nndl_helpers.chapters.ch16d) against
onnxruntime: every operator it implements on a one-node graph built with onnx.helper, the two exported course
models (LeNet-5 and the tiny GPT) against onnxruntime and PyTorch, and its error messages."""
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nndl_helpers.chapters.ch16d import ONNX_OPS, NumpyOnnxSession, check_feed, graph_inputs

ort = pytest.importorskip("onnxruntime")
OPSET = 20
TOL = 1e-5                      # float32: largest absolute difference allowed
INT64_MAX = np.iinfo(np.int64).max
R = np.random.default_rng(0)


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
         np.dtype(np.bool_): TensorProto.BOOL}

# operator -> list of (inputs (None = optional input left out), attributes, output element type)
CASES = {
    "Conv": [([f32(2, 3, 9, 9), f32(4, 3, 3, 3), f32(4)], dict(pads=[1, 1, 1, 1], strides=[2, 2]), TensorProto.FLOAT),
             ([f32(1, 2, 7, 7), f32(3, 2, 3, 3)], dict(dilations=[2, 2], kernel_shape=[3, 3]), TensorProto.FLOAT)],
    "MaxPool": [([f32(2, 3, 8, 8)], dict(kernel_shape=[2, 2], strides=[2, 2]), TensorProto.FLOAT),
                ([f32(1, 2, 7, 7)], dict(kernel_shape=[3, 3]), TensorProto.FLOAT)],
    "Relu": [([f32(3, 4, 5)], {}, TensorProto.FLOAT)],
    "Gemm": [([f32(5, 4), f32(3, 4), f32(3)], dict(transB=1), TensorProto.FLOAT),
             ([f32(4, 5), f32(4, 3), f32(5, 3)], dict(transA=1, alpha=0.5, beta=2.0), TensorProto.FLOAT),
             ([f32(2, 4), f32(4, 3)], {}, TensorProto.FLOAT)],
    "Reshape": [([f32(2, 3, 4), i64(0, -1)], {}, TensorProto.FLOAT),
                ([f32(2, 3, 4), i64(4, 3, 2)], dict(allowzero=1), TensorProto.FLOAT)],
    "LayerNormalization": [([3 * f32(2, 5, 8) + 1, f32(8), f32(8)], dict(epsilon=1e-5), TensorProto.FLOAT),
                           ([f32(4, 6), f32(6)], dict(axis=-1), TensorProto.FLOAT)],
    "Softmax": [([5 * f32(3, 4, 5)], {}, TensorProto.FLOAT), ([f32(3, 4, 5)], dict(axis=1), TensorProto.FLOAT)],
    "Gelu": [([3 * f32(4, 7)], dict(approximate="tanh"), TensorProto.FLOAT)],
    "Gather": [([f32(10, 4), R.integers(-10, 10, (2, 3))], {}, TensorProto.FLOAT),
               ([f32(3, 5), i64(4, 0)], dict(axis=1), TensorProto.FLOAT)],
    "MatMul": [([f32(2, 3, 4, 5), f32(2, 3, 5, 6)], {}, TensorProto.FLOAT), ([f32(4, 5), f32(5, 2)], {}, TensorProto.FLOAT)],
    "Add": [([f32(2, 3, 4), f32(4)], {}, TensorProto.FLOAT)],
    "Mul": [([f32(2, 3, 4), f32(3, 1)], {}, TensorProto.FLOAT)],
    "Equal": [([np.array([1, 2, 3, 0], np.float32), np.array([1, 0, 3, 5], np.float32)], {}, TensorProto.BOOL),
              ([i64(1, 2, 3), i64(2)], {}, TensorProto.BOOL)],
    "Where": [([R.random((3, 4)) < 0.5, f32(3, 4), f32(4)], {}, TensorProto.FLOAT)],
    "Transpose": [([f32(2, 3, 4)], dict(perm=[2, 0, 1]), TensorProto.FLOAT), ([f32(2, 3, 4)], {}, TensorProto.FLOAT)],
    "Shape": [([f32(2, 3, 4)], {}, TensorProto.INT64), ([f32(2, 3, 4)], dict(start=1, end=2), TensorProto.INT64),
              ([f32(2, 3, 4)], dict(start=-2), TensorProto.INT64)],
    "Squeeze": [([f32(2, 1, 3, 1), i64(1)], {}, TensorProto.FLOAT), ([f32(2, 1, 3, 1)], {}, TensorProto.FLOAT)],
    "Concat": [([f32(2, 3), f32(2, 1), f32(2, 4)], dict(axis=1), TensorProto.FLOAT), ([i64(1), i64(2, 3)], dict(axis=0), TensorProto.INT64)],
    "Slice": [([f32(5, 6), i64(1, -4), i64(4, INT64_MAX), i64(0, 1), i64(1, 2)], {}, TensorProto.FLOAT),
              ([f32(5, 6), i64(-1), i64(-INT64_MAX), i64(0), i64(-2)], {}, TensorProto.FLOAT),
              ([f32(5, 6), i64(2), i64(10)], {}, TensorProto.FLOAT)],
    "Range": [([np.array(0, np.int64), np.array(7, np.int64), np.array(2, np.int64)], {}, TensorProto.INT64),
              ([np.array(1.0, np.float32), np.array(-2.0, np.float32), np.array(-0.5, np.float32)], {}, TensorProto.FLOAT)],
    "Expand": [([f32(3, 1), i64(2, 3, 4)], {}, TensorProto.FLOAT), ([np.array(True), i64(4, 4)], {}, TensorProto.BOOL)],
    "Trilu": [([f32(2, 4, 4), np.array(0, np.int64)], dict(upper=0), TensorProto.FLOAT),
              ([f32(3, 5), np.array(1, np.int64)], {}, TensorProto.FLOAT), ([f32(4, 3)], dict(upper=0), TensorProto.FLOAT)],
}


def one_node_model(op, inputs, attrs, out_type):
    names = [f"in{k}" if x is not None else "" for k, x in enumerate(inputs)]
    node = helper.make_node(op, names, ["out"], name=f"the_{op.lower()}", **attrs)
    graph = helper.make_graph([node], f"one_{op}",
                              [helper.make_tensor_value_info(n, _ELEM[x.dtype], x.shape) for n, x in zip(names, inputs) if n],
                              [helper.make_tensor_value_info("out", out_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])   # ORT checks it on load
    return model, {n: x for n, x in zip(names, inputs) if n}


def test_every_supported_operator_has_a_case():
    assert set(CASES) == set(ONNX_OPS)


@pytest.mark.parametrize("op, k", [(op, k) for op, cases in CASES.items() for k in range(len(cases))])
def test_operator_matches_onnxruntime(op, k):
    model, feeds = one_node_model(op, *CASES[op][k])
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    (got,) = NumpyOnnxSession(model).run(None, feeds)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- the exported course models
torch = pytest.importorskip("torch")


def _export(model, example, path, input_name, dynamic):
    arg = "input" if isinstance(model, torch.nn.Sequential) else "idx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, dynamo=True, external_data=False, verbose=False,
                          input_names=[input_name], output_names=["logits"], dynamic_shapes={arg: dynamic})
    exported = onnx.load(path)
    onnx.checker.check_model(exported, full_check=True)
    return exported


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    from nndl_helpers.chapters.ch05a_torch import lenet5_torch
    torch.manual_seed(0)
    net = lenet5_torch().eval()
    path = tmp_path_factory.mktemp("onnx") / "lenet5.onnx"
    return net, _export(net, torch.rand(2, 1, 28, 28), path, "images", {0: torch.export.Dim("batch")}), path


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    from nndl_helpers.chapters.ch08b_torch import TinyGPT
    torch.manual_seed(0)
    net = TinyGPT(20, 16, 32, 4, 2).eval()
    with torch.no_grad():                     # distinct LayerNorm parameters, as after training
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("onnx") / "tiny_gpt.onnx"
    dynamic = {0: torch.export.Dim("batch"), 1: torch.export.Dim("T", max=16)}
    return net, _export(net, torch.randint(0, 20, (2, 8)), path, "ids", dynamic), path


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_lenet_three_runtimes_agree(lenet, batch):
    net, model, path = lenet
    x = np.random.default_rng(batch).random((batch, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    (ort_out,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": x})
    (np_out,) = NumpyOnnxSession(path).run(None, {"images": x})
    assert np_out.shape == (batch, 10) and np_out.dtype == np.float32
    assert np.abs(ort_out - want).max() < TOL and np.abs(np_out - want).max() < TOL
    np.testing.assert_allclose(np_out, ort_out, rtol=0, atol=TOL)


@pytest.mark.parametrize("batch, T", [(1, 1), (7, 5), (64, 16)])
def test_tiny_gpt_three_runtimes_agree(tiny_gpt, batch, T):
    net, model, path = tiny_gpt
    ids = np.random.default_rng(T).integers(0, 20, (batch, T))
    with torch.no_grad():
        want = net(torch.from_numpy(ids)).numpy()
    (ort_out,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})
    (np_out,) = NumpyOnnxSession(model).run(None, {"ids": ids})
    assert np_out.shape == (batch, T, 20) and np_out.dtype == np.float32
    assert np.abs(ort_out - want).max() < TOL and np.abs(np_out - want).max() < TOL


def test_exported_graphs_use_only_supported_operators(lenet, tiny_gpt):
    ops = {node.op_type for _, model, _ in (lenet, tiny_gpt) for node in model.graph.node}
    assert ops <= set(ONNX_OPS), ops - set(ONNX_OPS)
    assert graph_inputs(lenet[1]) == [("images", ("batch", 1, 28, 28), np.dtype(np.float32))]
    assert graph_inputs(tiny_gpt[1]) == [("ids", ("batch", "T"), np.dtype(np.int64))]


# ----------------------------------------------------------------------------- bad input, clear errors
@pytest.mark.parametrize("shape", [(7, 28, 28), (7, 1, 32, 32), (7, 3, 28, 28), (784,)])
def test_wrong_image_shape_names_the_expected_shape(lenet, shape):
    with pytest.raises(ValueError, match=r"expects shape \(batch, 1, 28, 28\), got " + re_shape(shape)):
        NumpyOnnxSession(lenet[2]).run(None, {"images": np.zeros(shape, np.float32)})


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_wrong_dtype_and_missing_input(lenet):
    session = NumpyOnnxSession(lenet[1])
    with pytest.raises(ValueError, match="expects dtype float32, got float64"):
        session.run(None, {"images": np.zeros((2, 1, 28, 28))})
    with pytest.raises(ValueError, match=r"missing input\(s\) \['images'\]"):
        session.run(None, {"pixels": np.zeros((2, 1, 28, 28), np.float32)})
    with pytest.raises(ValueError, match="expects shape"):
        check_feed("x", np.zeros((2, 3)), ("batch", 4), np.dtype(np.float64))


def test_unsupported_operator_is_named_at_load():
    model, _ = one_node_model("Relu", [f32(3)], {}, TensorProto.FLOAT)
    model.graph.node[0].op_type = "Erf"
    with pytest.raises(NotImplementedError, match=r"node 'the_relu': ONNX operator 'Erf' is not supported"):
        NumpyOnnxSession(model)
    model.graph.node[0].op_type, model.graph.node[0].domain = "Relu", "com.microsoft"
    with pytest.raises(NotImplementedError, match=r"'com\.microsoft\.Relu' is not supported"):
        NumpyOnnxSession(model)


def test_unsupported_attributes_and_outputs_are_named():
    model, feeds = one_node_model("Conv", [f32(1, 4, 5, 5), f32(4, 2, 3, 3)], dict(group=2), TensorProto.FLOAT)
    with pytest.raises(NotImplementedError, match="group=2"):
        NumpyOnnxSession(model).run(None, feeds)
    model, feeds = one_node_model("Conv", [f32(1, 1, 5, 5), f32(1, 1, 3, 3)], dict(pads=[1, 0, 1, 0]), TensorProto.FLOAT)
    with pytest.raises(NotImplementedError, match=r"pads=\[1, 0, 1, 0\] differ"):
        NumpyOnnxSession(model).run(None, feeds)
    model, feeds = one_node_model("Gelu", [f32(3)], {}, TensorProto.FLOAT)
    with pytest.raises(NotImplementedError, match="approximate='none'"):
        NumpyOnnxSession(model).run(None, feeds)
    model, _ = one_node_model("Relu", [f32(3)], {}, TensorProto.FLOAT)
    model.graph.node[0].attribute.append(helper.make_attribute("alpha", 0.1))
    with pytest.raises(NotImplementedError, match="attribute 'alpha' of Relu"):
        NumpyOnnxSession(model)
    model.graph.node[0].ClearField("attribute")
    model.graph.node[0].output.append("extra")
    with pytest.raises(NotImplementedError, match="Relu with 2 outputs"):
        NumpyOnnxSession(model)


def test_gather_out_of_range_is_a_value_error():
    model, feeds = one_node_model("Gather", [f32(4, 2), i64(1, 4)], {}, TensorProto.FLOAT)
    with pytest.raises(ValueError, match=r"indices must lie in \[-4, 3\]"):
        NumpyOnnxSession(model).run(None, feeds)


def test_numpy_module_does_not_import_torch():
    code = "import sys, nndl_helpers.chapters.ch16d; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
