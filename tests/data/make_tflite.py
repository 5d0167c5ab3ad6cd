#!/usr/bin/python3
"""Write edgefleet's TFLite test models (tests/data/tflite/) without TensorFlow.

Debian has no TensorFlow, so the files are written with the FlatBuffers builder (Debian's
python3-flatbuffers) from the TFLite schema's field numbers. Nothing is trained here:

    digits.tflite      the digits CNN of tests/data/digits/v1 (its ONNX file's weights), as
                       TFLite ops: RESHAPE (NCHW [1,1,8,8] to NHWC [1,8,8,1], the same bytes
                       since C = 1), CONV_2D + RELU twice, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED.
                       Batch 1 (the TFLite file's shape; shape_signature says -1).
    custom_op.tflite   one CUSTOM operator, "Convolution2DTransposeBias" (a MediaPipe custom
                       op), for tests that a custom operator is refused by name.

The digits conversion is checked here, before writing: a numpy run of the TFLite graph's
semantics (NHWC, OHWI filters, SAME padding) must reproduce the golden logits that torch wrote
(tests/data/digits/v1/golden/heldout/output_0.pb) to 1e-4. So the reference for the TFLite
variant's parity is torch, not the engine that runs it.

    /usr/bin/python3 tests/data/make_tflite.py
"""

import os
import sys

import flatbuffers
import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tflite")
DIGITS = os.path.join(HERE, "digits", "v1")

# TFLite schema numbers used below (schema.fbs).
ADD, CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, RESHAPE, CUSTOM = 0, 3, 9, 17, 22, 32
FLOAT32, INT32 = 0, 2
OPT_CONV2D, OPT_POOL2D, OPT_FULLY_CONNECTED, OPT_RESHAPE = 1, 5, 8, 17
SAME, VALID = 0, 1
ACT_NONE, ACT_RELU = 0, 1


class ModelWriter:
    """Collects buffers, tensors and operators of one subgraph, then writes the model."""

    def __init__(self):
        self.b = flatbuffers.Builder(1 << 16)
        self.buffers = [b""]  # buffer 0: empty, for tensors without data
        self.tensors = []  # (name, shape, type, buffer, shape_signature)
        self.ops = []  # (opcode index, inputs, outputs, options type, options builder)
        self.opcodes = []  # (builtin code, custom name)

    def tensor(self, name, shape, dtype=FLOAT32, data=None, signature=None):
        buffer = 0
        if data is not None:
            self.buffers.append(data.tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append((name, list(shape), dtype, buffer, signature))
        return len(self.tensors) - 1

    def constant(self, name, array):
        dtype = INT32 if array.dtype == np.int32 else FLOAT32
        return self.tensor(name, array.shape, dtype, np.ascontiguousarray(array))

    def op(self, code, inputs, outputs, options_type=0, options=None, custom=None):
        key = (code, custom)
        if key not in self.opcodes:
            self.opcodes.append(key)
        self.ops.append((self.opcodes.index(key), inputs, outputs, options_type, options))

    def _ints(self, values):
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependInt32(v)
        return self.b.EndVector()

    def _offsets(self, offsets):
        self.b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def write(self, inputs, outputs, description):
        b = self.b
        buffers = []
        for data in self.buffers:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)  # force_align: 16, as the schema asks
                b.head = b.head - len(data)  # the bytes at once (as CreateByteVector does)
                b.Bytes[b.head:b.head + len(data)] = data
                vec = b.EndVector()
            b.StartObject(1)
            if vec is not None:
                b.PrependUOffsetTRelativeSlot(0, vec, 0)
            buffers.append(b.EndObject())
        tensors = []
        for name, shape, dtype, buffer, signature in self.tensors:
            name_off = b.CreateString(name)
            shape_off = self._ints(shape)
            sig_off = self._ints(signature) if signature else None
            b.StartObject(8)
            b.PrependUOffsetTRelativeSlot(0, shape_off, 0)
            b.PrependInt8Slot(1, dtype, 0)
            b.PrependUint32Slot(2, buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, name_off, 0)
            if sig_off is not None:
                b.PrependUOffsetTRelativeSlot(7, sig_off, 0)
            tensors.append(b.EndObject())
        ops = []
        for opcode, ins, outs, options_type, options in self.ops:
            options_off = options(b) if options else None
            ins_off, outs_off = self._ints(ins), self._ints(outs)
            b.StartObject(5)
            b.PrependUint32Slot(0, opcode, 0)
            b.PrependUOffsetTRelativeSlot(1, ins_off, 0)
            b.PrependUOffsetTRelativeSlot(2, outs_off, 0)
            if options_off is not None:
                b.PrependUint8Slot(3, options_type, 0)
                b.PrependUOffsetTRelativeSlot(4, options_off, 0)
            ops.append(b.EndObject())
        tensors_off, ops_off = self._offsets(tensors), self._offsets(ops)
        in_off, out_off = self._ints(inputs), self._ints(outputs)
        name_off = b.CreateString("main")
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tensors_off, 0)
        b.PrependUOffsetTRelativeSlot(1, in_off, 0)
        b.PrependUOffsetTRelativeSlot(2, out_off, 0)
        b.PrependUOffsetTRelativeSlot(3, ops_off, 0)
        b.PrependUOffsetTRelativeSlot(4, name_off, 0)
        subgraph = b.EndObject()
        codes = []
        for code, custom in self.opcodes:
            custom_off = b.CreateString(custom) if custom else None
            b.StartObject(4)
            b.PrependInt8Slot(0, min(code, 127), 0)  # deprecated_builtin_code
            if custom_off is not None:
                b.PrependUOffsetTRelativeSlot(1, custom_off, 0)
            b.PrependInt32Slot(2, 1, 1)  # version 1 (the default, written out)
            b.PrependInt32Slot(3, code, 0)  # builtin_code
            codes.append(b.EndObject())
        codes_off = self._offsets(codes)
        subgraphs_off = self._offsets([subgraph])
        buffers_off = self._offsets(buffers)
        desc_off = b.CreateString(description)
        b.StartObject(5)
        b.PrependUint32Slot(0, 3, 0)  # schema version 3
        b.PrependUOffsetTRelativeSlot(1, codes_off, 0)
        b.PrependUOffsetTRelativeSlot(2, subgraphs_off, 0)
        b.PrependUOffsetTRelativeSlot(3, desc_off, 0)
        b.PrependUOffsetTRelativeSlot(4, buffers_off, 0)
        b.Finish(b.EndObject(), file_identifier=b"TFL3")
        return bytes(b.Output())


def conv_options(activation, stride=1, padding=SAME):
    def build(b):
        b.StartObject(6)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride, 0)
        b.PrependInt32Slot(2, stride, 0)
        b.PrependInt8Slot(3, activation, 0)
        b.PrependInt32Slot(4, 1, 1)
        b.PrependInt32Slot(5, 1, 1)
        return b.EndObject()
    return build


def pool_options(filter_w, filter_h, stride, padding=VALID):
    def build(b):
        b.StartObject(6)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride, 0)
        b.PrependInt32Slot(2, stride, 0)
        b.PrependInt32Slot(3, filter_w, 0)
        b.PrependInt32Slot(4, filter_h, 0)
        b.PrependInt8Slot(5, ACT_NONE, 0)
        return b.EndObject()
    return build


def fc_options(b):
    b.StartObject(4)
    b.PrependInt8Slot(0, ACT_NONE, 0)
    return b.EndObject()


def reshape_options(shape):
    def build(b):
        b.StartVector(4, len(shape), 4)
        for v in reversed(shape):
            b.PrependInt32(v)
        vec = b.EndVector()
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        return b.EndObject()
    return build


def digits_weights():
    model = onnx.load(os.path.join(DIGITS, "model", "digits_op10.onnx"))
    w = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in model.graph.initializer}
    ops = [n.op_type for n in model.graph.node]
    if ops != ["Conv", "Relu", "Conv", "Relu", "MaxPool", "Flatten", "Gemm"]:
        sys.exit(f"digits_op10.onnx: expected the digits CNN's nodes, found {ops}")
    return {
        # OIHW -> OHWI; torch's flatten order (C,H,W) -> NHWC's (H,W,C) for the dense weights.
        "w1": w["conv1.weight"].transpose(0, 2, 3, 1).copy(), "b1": w["conv1.bias"],
        "w2": w["conv2.weight"].transpose(0, 2, 3, 1).copy(), "b2": w["conv2.bias"],
        "w3": w["fc.weight"].reshape(10, 16, 4, 4).transpose(0, 2, 3, 1).reshape(10, 256).copy(),
        "b3": w["fc.bias"],
    }


def numpy_forward(x_nchw, p):
    """The TFLite graph's semantics in numpy: NHWC, OHWI filters, SAME padding, stride 1."""
    x = x_nchw.reshape(-1, 8, 8, 1)

    def conv_relu(x, w, bias):
        n, h, wd, _ = x.shape
        pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((n, h, wd, w.shape[0]), dtype=np.float64)
        for dy in range(3):
            for dx in range(3):
                out += pad[:, dy:dy + h, dx:dx + wd, :] @ w[:, dy, dx, :].T
        return np.maximum(out + bias, 0.0)

    x = conv_relu(conv_relu(x, p["w1"], p["b1"]), p["w2"], p["b2"])
    x = x.reshape(-1, 4, 2, 4, 2, 16).max(axis=(2, 4))
    return x.reshape(-1, 256) @ p["w3"].T + p["b3"]


def write_digits():
    p = digits_weights()
    golden = os.path.join(DIGITS, "golden", "heldout")
    x = numpy_helper.to_array(onnx.load_tensor(os.path.join(golden, "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(os.path.join(golden, "output_0.pb")))
    got = numpy_forward(x.astype(np.float64), p)
    worst = float(np.max(np.abs(got - want)))
    if worst > 1e-4:
        sys.exit(f"digits: the TFLite graph's numpy run differs from torch's logits by {worst}")
    print(f"digits: numpy run of the TFLite graph matches torch's logits (max diff {worst:.2e})")

    m = ModelWriter()
    x_in = m.tensor("input", [1, 1, 8, 8], signature=[-1, 1, 8, 8])
    nhwc = m.tensor("nhwc", [1, 8, 8, 1])
    m.op(RESHAPE, [x_in, m.constant("nhwc_shape", np.array([1, 8, 8, 1], np.int32))], [nhwc],
         OPT_RESHAPE, reshape_options([1, 8, 8, 1]))
    c1 = m.tensor("conv1", [1, 8, 8, 8])
    m.op(CONV_2D, [nhwc, m.constant("conv1.weight", p["w1"]), m.constant("conv1.bias", p["b1"])],
         [c1], OPT_CONV2D, conv_options(ACT_RELU))
    c2 = m.tensor("conv2", [1, 8, 8, 16])
    m.op(CONV_2D, [c1, m.constant("conv2.weight", p["w2"]), m.constant("conv2.bias", p["b2"])],
         [c2], OPT_CONV2D, conv_options(ACT_RELU))
    pooled = m.tensor("pool", [1, 4, 4, 16])
    m.op(MAX_POOL_2D, [c2], [pooled], OPT_POOL2D, pool_options(2, 2, 2))
    flat = m.tensor("flat", [1, 256])
    m.op(RESHAPE, [pooled, m.constant("flat_shape", np.array([1, 256], np.int32))], [flat],
         OPT_RESHAPE, reshape_options([1, 256]))
    logits = m.tensor("logits", [1, 10], signature=[-1, 10])
    m.op(FULLY_CONNECTED, [flat, m.constant("fc.weight", p["w3"]), m.constant("fc.bias", p["b3"])],
         [logits], OPT_FULLY_CONNECTED, fc_options)
    return m.write([x_in], [logits], "edgefleet digits CNN (tests/data/make_tflite.py)")


def write_custom_op():
    m = ModelWriter()
    x = m.tensor("input", [1, 4, 4, 1])
    y = m.tensor("output", [1, 8, 8, 1])
    m.op(CUSTOM, [x], [y], custom="Convolution2DTransposeBias")
    return m.write([x], [y], "edgefleet test: one MediaPipe custom operator")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in (("digits.tflite", write_digits()), ("custom_op.tflite", write_custom_op())):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"wrote {os.path.join(OUT, name)} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
