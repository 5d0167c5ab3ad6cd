#!/usr/bin/python3
"""Makes the small ONNX models the runtime's compatibility tests and operator table use.

    /usr/bin/python3 tests/data/make_onnx_cases.py        # rewrites tests/data/onnx/

Needs Debian's python3-onnx and python3-numpy; the MobileNet block also needs python3-torch and
python3-torchvision (scripts/install-deps.sh --models). Nothing is downloaded. Writes:

onnx/node/ef_<op>_<variant>_op<N>/model.onnx + test_data_set_0/{input,output}_K.pb
    Node test cases in the layout of ONNX's conformance data (libonnx-testdata). ONNX ships its
    node cases mostly at one recent opset per operator; real exports (torch at opset 10..13) use
    older schema versions of the same operators. For every operator our models use, and for
    every schema version of it in force somewhere in opsets 7..13, one or two cases at the
    highest opset in 7..13 where that version is in force. Weights and constant operands are
    initializers, as in exported models (ONNX's own cases feed them as graph inputs). Expected
    outputs come from the numpy reference implementations below, not from any backend.

onnx/limits/<case>/...
    Cases in the same layout for input patterns OpenCV 4.6 is known to fail although it runs the
    operator otherwise (a per-operator table cannot express a pattern). They are not evidence
    for the operator table; tests/runtime/op_table_test.cpp checks that they still fail, so an
    OpenCV upgrade that fixes one is noticed. Each is explained where it is made.

onnx/mobilenet_block_op10.onnx, onnx/mobilenet_block_op13.onnx, onnx/mobilenet_block/
    A tiny MobileNetV2-style network (stem Conv+BN+ReLU6, one inverted residual block from
    torchvision: expand 1x1 + depthwise 3x3 + project 1x1 with BN and ReLU6, residual Add,
    global average pool, Linear), random weights (seed 0), exported with torch.onnx.export at
    opset 10 and 13, input "input" [N,3,16,16], output "logits" [N,10]; golden input_0.pb and
    output_0.pb (torch's outputs) for a batch of 2. At opset 10 ReLU6 exports as Clip with
    min/max attributes; at opset 13 as a 3-input Clip (min/max as inputs), which OpenCV 4.6's
    ONNX importer refuses. The script checks both facts on the graphs and, when python3-opencv is
    installed, by loading both files in cv2.dnn.

The output is deterministic (fixed seeds); the files are committed so tests never need torch.
"""

import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "onnx")
NODE_OUT = os.path.join(OUT, "node")
LIMITS_OUT = os.path.join(OUT, "limits")
OPSETS = range(7, 14)


# ---------------------------------------------------------------- numpy reference implementations


def ref_conv(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), group=1):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (xp.shape[2] - kh) // strides[0] + 1
    ow = (xp.shape[3] - kw) // strides[1] + 1
    y = np.zeros((n, m, oh, ow), dtype=np.float64)
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg].astype(np.float64)
        ws = w[g * mg:(g + 1) * mg].astype(np.float64)
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, :, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw]
                y[:, g * mg:(g + 1) * mg, i, j] = np.einsum("nchw,mchw->nm", patch, ws)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y.astype(np.float32)


def ref_pool(x, kernel, strides, pads, mode):
    fill = -np.inf if mode == "max" else np.nan
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                constant_values=fill)
    oh = (xp.shape[2] - kernel[0]) // strides[0] + 1
    ow = (xp.shape[3] - kernel[1]) // strides[1] + 1
    y = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * strides[0]:i * strides[0] + kernel[0],
                     j * strides[1]:j * strides[1] + kernel[1]]
            # AveragePool's default count_include_pad=0: padding does not count (NaN-ignoring mean).
            y[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else np.nanmean(win, axis=(2, 3))
    return y.astype(np.float32)


def ref_softmax_2d(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- node cases

RNG = np.random.default_rng(0)


def rand(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, size=shape).astype(np.float32)


def write_case(name, opset, node, inputs, initializers, outputs, root=NODE_OUT):
    """node: one node or a list; inputs/outputs: lists of (name, array); initializers: list of
    (name, array)."""
    graph = helper.make_graph(
        node if isinstance(node, list) else [node], name,
        [helper.make_tensor_value_info(n, onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[a.dtype], a.shape)
         for n, a in inputs],
        [helper.make_tensor_value_info(n, onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[a.dtype], a.shape)
         for n, a in outputs],
        initializer=[numpy_helper.from_array(a, n) for n, a in initializers])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edgefleet-make_onnx_cases")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    if model.ir_version < 4:
        # Before IR 4 every initializer must also be listed as a graph input.
        graph.input.extend(
            helper.make_tensor_value_info(n, onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[a.dtype], a.shape)
            for n, a in initializers)
        model = helper.make_model(graph, opset_imports=opsets,
                                  producer_name="edgefleet-make_onnx_cases")
        model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    case_dir = os.path.join(root, name)
    data_dir = os.path.join(case_dir, "test_data_set_0")
    os.makedirs(data_dir)
    onnx.save(model, os.path.join(case_dir, "model.onnx"))
    for kind, tensors in (("input", inputs), ("output", outputs)):
        for k, (n, a) in enumerate(tensors):
            with open(os.path.join(data_dir, f"{kind}_{k}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(a, n).SerializeToString())


def versions_in_force(op):
    """{schema since_version: highest opset in OPSETS where it is in force}."""
    found = {}
    for opset in OPSETS:
        found[onnx.defs.get_schema(op, opset).since_version] = opset
    return found


def case_conv(opset):
    x = rand(2, 3, 7, 7)
    w, b = rand(4, 3, 3, 3), rand(4)
    y = ref_conv(x, w, b, strides=(2, 2), pads=(1, 1, 1, 1))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    write_case(f"ef_conv_strided_op{opset}", opset, node, [("x", x)], [("w", w), ("b", b)],
               [("y", y)])
    # Depthwise, as in MobileNet's inverted residual block.
    x = rand(2, 4, 6, 6)
    w = rand(4, 1, 3, 3)
    y = ref_conv(x, w, None, pads=(1, 1, 1, 1), group=4)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            group=4)
    write_case(f"ef_conv_depthwise_op{opset}", opset, node, [("x", x)], [("w", w)], [("y", y)])


def case_unary(op, fn, opset, **attrs):
    x = rand(2, 3, 4, 4, low=-3, high=3)
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    write_case(f"ef_{op.lower()}_op{opset}", opset, node, [("x", x)], [], [("y", fn(x))])


def case_maxpool(opset):
    x = rand(2, 3, 6, 6)
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    write_case(f"ef_maxpool_2x2_op{opset}", opset, node, [("x", x)], [],
               [("y", ref_pool(x, (2, 2), (2, 2), (0, 0, 0, 0), "max"))])
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    write_case(f"ef_maxpool_3x3_pads_op{opset}", opset, node, [("x", x)], [],
               [("y", ref_pool(x, (3, 3), (2, 2), (1, 1, 1, 1), "max"))])


def case_averagepool(opset):
    x = rand(2, 3, 6, 6)
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    write_case(f"ef_averagepool_2x2_op{opset}", opset, node, [("x", x)], [],
               [("y", ref_pool(x, (2, 2), (2, 2), (0, 0, 0, 0), "avg"))])


def case_globalaveragepool(opset):
    x = rand(2, 3, 5, 5)
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    write_case(f"ef_globalaveragepool_op{opset}", opset, node, [("x", x)], [],
               [("y", x.mean(axis=(2, 3), keepdims=True).astype(np.float32))])


def case_flatten(opset):
    x = rand(2, 3, 2, 2)
    node = helper.make_node("Flatten", ["x"], ["y"], axis=1)
    write_case(f"ef_flatten_op{opset}", opset, node, [("x", x)], [], [("y", x.reshape(2, 12))])


def case_gemm(opset):
    # torch's Linear: Gemm(x, W, b) with transB=1, b broadcast over the batch.
    a, w, c = rand(3, 12), rand(5, 12), rand(5)
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], alpha=1.0, beta=1.0, transB=1)
    y = (a.astype(np.float64) @ w.T.astype(np.float64) + c).astype(np.float32)
    write_case(f"ef_gemm_linear_op{opset}", opset, node, [("a", a)], [("w", w), ("c", c)],
               [("y", y)])


def case_clip(opset, since):
    x = rand(2, 3, 4, 4, low=-8, high=8)
    y = np.clip(x, 0.0, 6.0)
    if since < 11:
        node = helper.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)
        write_case(f"ef_clip_relu6_op{opset}", opset, node, [("x", x)], [], [("y", y)])
    else:
        # What torch exports for ReLU6 from opset 11 on: min and max as constant inputs.
        node = helper.make_node("Clip", ["x", "min", "max"], ["y"])
        write_case(f"ef_clip_relu6_op{opset}", opset, node, [("x", x)],
                   [("min", np.array(0.0, np.float32)), ("max", np.array(6.0, np.float32))],
                   [("y", y)])


def case_binary(op, fn, opset):
    a, b = rand(2, 3, 4, 4), rand(2, 3, 4, 4)
    node = helper.make_node(op, ["a", "b"], ["y"])
    write_case(f"ef_{op.lower()}_same_op{opset}", opset, node, [("a", a), ("b", b)], [],
               [("y", fn(a, b))])
    # Per-channel constant [1,C,1,1] broadcast numpy-style over a batch of 2 (opset >= 7).
    # OpenCV 4.6 runs this for Mul but fails it for Add (batch 1 works): a limit of one input
    # pattern that a per-operator table cannot express, and not one our models use (their Add is
    # the residual sum of two activations), so Add's goes to limits/ (see LIMITS_OUT).
    c = rand(1, 3, 1, 1)
    write_case(f"ef_{op.lower()}_channel_const_op{opset}", opset, node, [("a", a)], [("b", c)],
               [("y", fn(a, c))], root=LIMITS_OUT if op == "Add" else NODE_OUT)


def case_batchnorm(opset, since):
    x = rand(2, 3, 4, 4)
    scale, bias, mean = rand(3), rand(3), rand(3)
    var = rand(3, low=0.5, high=2.0)
    eps = 1e-5
    y = ((x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + eps) *
         scale.reshape(1, 3, 1, 1) + bias.reshape(1, 3, 1, 1)).astype(np.float32)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=eps)
    write_case(f"ef_batchnormalization_op{opset}", opset, node, [("x", x)],
               [("s", scale), ("b", bias), ("m", mean), ("v", var)], [("y", y)])


def case_reshape(opset):
    x = rand(2, 3, 2, 2)
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    write_case(f"ef_reshape_flatten_op{opset}", opset, node, [("x", x)],
               [("shape", np.array([2, -1], np.int64))], [("y", x.reshape(2, 12))])


def case_concat(opset):
    a, b = rand(2, 3, 4, 4), rand(2, 2, 4, 4)
    node = helper.make_node("Concat", ["a", "b"], ["y"], axis=1)
    write_case(f"ef_concat_channels_op{opset}", opset, node, [("a", a), ("b", b)], [],
               [("y", np.concatenate([a, b], axis=1))])


def case_softmax(opset):
    # 2-D [N, C] logits: the one shape on which every Softmax version (flatten-to-2D before 13,
    # per-axis from 13) means the same thing, and what a classifier's head produces.
    x = rand(3, 10, low=-4, high=4)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    write_case(f"ef_softmax_2d_op{opset}", opset, node, [("x", x)], [], [("y", ref_softmax_2d(x))])


def case_transpose(opset):
    x = rand(2, 3, 4, 5)
    node = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])
    write_case(f"ef_transpose_nhwc_op{opset}", opset, node, [("x", x)], [],
               [("y", x.transpose(0, 2, 3, 1).copy())])


def case_constant(opset):
    # A Constant node's output as an operand, as exporters write shape and pad arguments (torch
    # at opset 11 feeds Pad's pads from a Constant). Its own RNG, so that the other cases' data
    # stay as they were.
    rng = np.random.default_rng(1000 + opset)
    x = rng.uniform(-1, 1, size=(2, 3)).astype(np.float32)
    c = rng.uniform(-1, 1, size=(2, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c, "c")),
             helper.make_node("Add", ["x", "c"], ["y"])]
    write_case(f"ef_constant_add_op{opset}", opset, nodes, [("x", x)], [], [("y", x + c)])


def make_node_cases():
    for root in (NODE_OUT, LIMITS_OUT):
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
    makers = {
        "Conv": lambda opset, since: case_conv(opset),
        "Relu": lambda opset, since: case_unary("Relu", lambda x: np.maximum(x, 0), opset),
        "Sigmoid": lambda opset, since: case_unary(
            "Sigmoid", lambda x: (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32),
            opset),
        "MaxPool": lambda opset, since: case_maxpool(opset),
        "AveragePool": lambda opset, since: case_averagepool(opset),
        "GlobalAveragePool": lambda opset, since: case_globalaveragepool(opset),
        "Flatten": lambda opset, since: case_flatten(opset),
        "Gemm": lambda opset, since: case_gemm(opset),
        "Clip": case_clip,
        "Add": lambda opset, since: case_binary("Add", np.add, opset),
        "Mul": lambda opset, since: case_binary("Mul", np.multiply, opset),
        "BatchNormalization": case_batchnorm,
        "Reshape": lambda opset, since: case_reshape(opset),
        "Concat": lambda opset, since: case_concat(opset),
        "Softmax": lambda opset, since: case_softmax(opset),
        "Transpose": lambda opset, since: case_transpose(opset),
        "Constant": lambda opset, since: case_constant(opset),
    }
    count = 0
    for op, make in makers.items():
        for since, opset in sorted(versions_in_force(op).items()):
            make(opset, since)
        count += len(versions_in_force(op))
    cases = sorted(os.listdir(NODE_OUT))
    print(f"wrote {len(cases)} node cases ({count} operator schema versions) under {NODE_OUT}, "
          f"{len(os.listdir(LIMITS_OUT))} under {LIMITS_OUT}")


# ---------------------------------------------------------------- MobileNetV2-style block


def make_mobilenet_block():
    import torch
    from torch import nn
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.ops.misc import Conv2dNormActivation

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    model = nn.Sequential(
        Conv2dNormActivation(3, 8, stride=2, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6),
        InvertedResidual(8, 8, stride=1, expand_ratio=4),  # 8 -> 32 -> depthwise -> 8, + residual
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(8, 10),
    )
    # Random BatchNorm statistics, so folding BN into Conv at export is not an identity.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)

    paths = {}
    for opset in (10, 13):
        path = os.path.join(OUT, f"mobilenet_block_op{opset}.onnx")
        torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        onnx.checker.check_model(onnx.load(path), full_check=True)
        paths[opset] = path
    golden = os.path.join(OUT, "mobilenet_block")
    shutil.rmtree(golden, ignore_errors=True)
    os.makedirs(golden)
    for name, kind, t in (("input", "input_0", x), ("logits", "output_0", y)):
        with open(os.path.join(golden, kind + ".pb"), "wb") as f:
            f.write(numpy_helper.from_array(t.numpy(), name).SerializeToString())

    # The two facts the compatibility tests rest on.
    for opset, path in paths.items():
        m = onnx.load(path)
        size = os.path.getsize(path)
        assert size < 200 * 1024, (path, size)
        clips = [n for n in m.graph.node if n.op_type == "Clip"]
        assert clips, f"{path}: no Clip node (ReLU6)"
        for n in clips:
            if opset == 10:
                assert len(n.input) == 1 and {a.name for a in n.attribute} == {"min", "max"}, n
            else:
                assert len([i for i in n.input if i]) == 3 and not n.attribute, n
        ops = sorted({n.op_type for n in m.graph.node})
        print(f"wrote {path} ({size} bytes): opset {opset}, operators {ops}, "
              f"{len(clips)} Clip nodes, first '{clips[0].name}' with {len(clips[0].input)} inputs")
    try:
        import cv2
    except ImportError:
        print("python3-opencv not installed: skipping the OpenCV import check")
        return
    net = cv2.dnn.readNetFromONNX(paths[10])
    net.setInput(x.numpy())
    diff = float(np.abs(net.forward() - y.numpy()).max())
    assert diff < 1e-4, diff
    print(f"cv2 {cv2.__version__}: opset 10 loads, max |diff| vs torch {diff:.2e}")
    try:
        cv2.dnn.readNetFromONNX(paths[13])
    except cv2.error as e:
        print(f"cv2 {cv2.__version__}: opset 13 refused: "
              f"{[l for l in str(e).splitlines() if 'error' in l][0].strip()}")
    else:
        sys.exit("expected OpenCV to refuse the opset-13 export (3-input Clip)")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_node_cases()
    make_mobilenet_block()


if __name__ == "__main__":
    main()
