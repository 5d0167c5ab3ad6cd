#!/usr/bin/python3
"""Exports torchvision's MobileNetV2 with random weights to ONNX for the inference benchmarks.

Run at bench time (needs `scripts/install-deps.sh --models`); nothing is downloaded: the weights
are random (seed 0), which is all a latency benchmark needs. Writes
  <out>/mobilenet_v2_op10.onnx   what OpenCV 4.6 DNN imports (ReLU6 as Clip with attributes)
  <out>/mobilenet_v2_op13.onnx   the export OpenCV 4.6 refuses (ReLU6 as a 3-input Clip)
Usage: /usr/bin/python3 bench/make_mobilenet.py <out_dir>
"""
import os
import sys

import torch
import torchvision


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    # Untrained BatchNorm layers are all identity (gamma 1, beta 0, mean 0, var 1), so the biases
    # folded into the convolutions come out equal and the exporter deduplicates them through
    # Identity nodes on initializers, which OpenCV 4.6 cannot import. Trained models do not look
    # like that: give every BatchNorm random statistics, as training would.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    example = torch.rand(1, 3, 224, 224)
    for opset in (10, 13):
        path = os.path.join(out, f"mobilenet_v2_op{opset}.onnx")
        torch.onnx.export(model, example, path, opset_version=opset, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
