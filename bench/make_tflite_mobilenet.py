#!/usr/bin/python3
"""Write MobileNetV2 as a TFLite file for bench/backends_side_by_side.sh, without TensorFlow.

The network is the one tests/data/make_torchscript.py makes (torchvision's MobileNetV2, seed 0,
batch norms calibrated the same way), so the tflite row of the side-by-side runs the model the
torch row runs. Each Conv2d + BatchNorm2d (+ ReLU6) becomes one CONV_2D or DEPTHWISE_CONV_2D with
the batch norm folded into its weights and RELU6 fused; PyTorch's symmetric padding of the
stride-2 3x3 convolutions is an explicit PAD (TFLite's SAME would pad 0 before, 1 after);
residuals are ADD, the global pool AVERAGE_POOL_2D 7x7, the classifier FULLY_CONNECTED. The
layout is NHWC, so the golden input is torch's NCHW input transposed.

Writes <out-dir>/model.tflite (about 14 MB) and golden/input_0.pb (float32 [1,224,224,3]) and
golden/output_0.pb (torch's logits [1,1000]); the side-by-side checks Arm NN's output against
them. Needs python3-torch, python3-torchvision, python3-onnx and python3-flatbuffers
(scripts/install-deps.sh --models).

    /usr/bin/python3 bench/make_tflite_mobilenet.py <out-dir>
"""

import os
import sys

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "data"))
import make_tflite as tfl  # noqa: E402  (ModelWriter and the schema numbers)
from make_torchscript import SEED, calibrate, write_tensor  # noqa: E402

AVERAGE_POOL_2D, DEPTHWISE_CONV_2D, PAD = 1, 4, 34
OPT_DEPTHWISE, OPT_ADD = 2, 11
ACT_RELU6 = 3


def fold(conv, bn):
    """The convolution's weights and bias with the batch norm folded in."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight.detach() * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    b = (bias - bn.running_mean) * scale + bn.bias.detach()
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)


def depthwise_options(stride, padding, activation):
    def build(b):
        b.StartObject(7)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride, 0)
        b.PrependInt32Slot(2, stride, 0)
        b.PrependInt32Slot(3, 1, 0)
        b.PrependInt8Slot(4, activation, 0)
        b.PrependInt32Slot(5, 1, 1)
        b.PrependInt32Slot(6, 1, 1)
        return b.EndObject()
    return build


def add_options(b):
    b.StartObject(1)
    b.PrependInt8Slot(0, tfl.ACT_NONE, 0)
    return b.EndObject()


class Converter:
    def __init__(self):
        self.m = tfl.ModelWriter()
        self.count = 0

    def name(self, what):
        self.count += 1
        return f"{what}_{self.count}"

    def conv_bn(self, x, shape, conv, bn, relu6):
        """x: tensor index of NHWC `shape`; returns (tensor, shape) after conv + bn (+ relu6)."""
        n, h, w, c = shape
        k, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        weights, bias = fold(conv, bn)
        depthwise = conv.groups > 1
        if depthwise and conv.groups != c:
            sys.exit("only depthwise grouped convolutions are converted")
        padding = tfl.VALID
        if pad and stride == 1:
            padding = tfl.SAME  # symmetric for odd kernels at stride 1
        elif pad:
            padded = self.m.tensor(self.name("pad"), [n, h + 2 * pad, w + 2 * pad, c])
            paddings = np.array([[0, 0], [pad, pad], [pad, pad], [0, 0]], np.int32)
            self.m.op(PAD, [x, self.m.constant(self.name("paddings"), paddings)], [padded])
            x, h, w = padded, h + 2 * pad, w + 2 * pad
        if padding == tfl.SAME:
            oh, ow = (h + stride - 1) // stride, (w + stride - 1) // stride
        else:
            oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        out_c = conv.out_channels
        y = self.m.tensor(self.name("act"), [n, oh, ow, out_c])
        act = ACT_RELU6 if relu6 else tfl.ACT_NONE
        b = self.m.constant(self.name("bias"), bias)
        if depthwise:  # [C,1,kh,kw] -> [1,kh,kw,C]
            wt = self.m.constant(self.name("dw"), weights.transpose(1, 2, 3, 0).copy())
            self.m.op(DEPTHWISE_CONV_2D, [x, wt, b], [y], OPT_DEPTHWISE,
                      depthwise_options(stride, padding, act))
        else:  # OIHW -> OHWI
            wt = self.m.constant(self.name("w"), weights.transpose(0, 2, 3, 1).copy())
            self.m.op(tfl.CONV_2D, [x, wt, b], [y], tfl.OPT_CONV2D,
                      tfl.conv_options(act, stride, padding))
        return y, [n, oh, ow, out_c]

    def conv_norm_act(self, x, shape, block):
        conv, bn = block[0], block[1]
        return self.conv_bn(x, shape, conv, bn, relu6=len(block) > 2)

    def inverted_residual(self, x, shape, block):
        layers = list(block.conv)
        y, s = x, shape
        while layers and isinstance(layers[0], torch.nn.Sequential):  # expand, depthwise
            y, s = self.conv_norm_act(y, s, layers.pop(0))
        y, s = self.conv_bn(y, s, layers[0], layers[1], relu6=False)  # project
        if block.use_res_connect:
            out = self.m.tensor(self.name("add"), s)
            self.m.op(tfl.ADD, [x, y], [out], OPT_ADD, add_options)
            y = out
        return y, s

    def convert(self, model):
        x = self.m.tensor("input", [1, 224, 224, 3], signature=[-1, 224, 224, 3])
        y, s = x, [1, 224, 224, 3]
        for block in model.features:
            if isinstance(block, torchvision.ops.misc.Conv2dNormActivation):
                y, s = self.conv_norm_act(y, s, block)
            else:
                y, s = self.inverted_residual(y, s, block)
        pooled = self.m.tensor("pooled", [1, 1, 1, s[3]])
        self.m.op(AVERAGE_POOL_2D, [y], [pooled], tfl.OPT_POOL2D, tfl.pool_options(s[2], s[1], 1))
        flat = self.m.tensor("flat", [1, s[3]])
        self.m.op(tfl.RESHAPE, [pooled, self.m.constant("flat_shape", np.array([1, s[3]], np.int32))],
                  [flat], tfl.OPT_RESHAPE, tfl.reshape_options([1, s[3]]))
        fc = model.classifier[1]
        logits = self.m.tensor("logits", [1, 1000], signature=[-1, 1000])
        self.m.op(tfl.FULLY_CONNECTED,
                  [flat, self.m.constant("fc.weight", fc.weight.detach().numpy().astype(np.float32)),
                   self.m.constant("fc.bias", fc.bias.detach().numpy().astype(np.float32))],
                  [logits], tfl.OPT_FULLY_CONNECTED, tfl.fc_options)
        return self.m.write([x], [logits], "edgefleet bench: torchvision MobileNetV2, seed 0")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_tflite_mobilenet.py <out-dir>")
    out = sys.argv[1]
    torch.manual_seed(SEED)
    model = torchvision.models.mobilenet_v2(weights=None)
    calibrate(model)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(SEED + 1))[:1]
    with torch.no_grad():
        y = model(x)
    os.makedirs(os.path.join(out, "golden"), exist_ok=True)
    with open(os.path.join(out, "model.tflite"), "wb") as f:
        f.write(Converter().convert(model))
    write_tensor(os.path.join(out, "golden", "input_0.pb"),
                 x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32), "input")
    write_tensor(os.path.join(out, "golden", "output_0.pb"), y.numpy().astype(np.float32),
                 "logits")
    print(f"wrote {os.path.join(out, 'model.tflite')} "
          f"({os.path.getsize(os.path.join(out, 'model.tflite'))} bytes) and its golden pair")


if __name__ == "__main__":
    main()
