#!/usr/bin/python3
"""Generate the TorchScript test models of the `torch` backend, with golden data.

torchvision's MobileNetV2 and ResNet-18 with random weights (fixed seed; nothing is
downloaded), traced with torch.jit.trace and frozen with torch.jit.freeze, plus one golden
input and the frozen module's output on it. The files are too large to commit (14 MB and
45 MB), so the build runs this script into the build tree (tests/runtime/CMakeLists.txt);
python3-torch and python3-torchvision are therefore in scripts/install-deps.sh's main list.

    /usr/bin/python3 tests/data/make_torchscript.py <out-dir>

Outputs, for NAME in mobilenet_v2, resnet18:

    <out-dir>/NAME/model.pt               the frozen TorchScript module, forward(x) -> logits
    <out-dir>/NAME/golden/input_0.pb      ONNX TensorProto "input",  float32 [2,3,224,224]
    <out-dir>/NAME/golden/output_0.pb     ONNX TensorProto "logits", float32 [2,1000]

Run with Debian's interpreter (the one that has torch), not a pyenv/venv python3. Seeded and
single-threaded: two runs wrote byte-identical files (torch 1.13.0a0, torchvision 0.14.1a0,
onnx 1.12.0, Debian 12).
"""

import os
import sys

import numpy as np
import torch
import torchvision
from onnx import numpy_helper

SEED = 0
BATCH = 2
CALIBRATION_BATCHES = 4
MODELS = {
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "resnet18": torchvision.models.resnet18,
}

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def write_tensor(path, array, name):
    t = numpy_helper.from_array(array, name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def calibrate(model):
    """Sets the batch norms' running statistics from random batches, as training would.

    With torchvision's initial statistics (mean 0, variance 1) activations shrink layer by layer
    and MobileNetV2's logits end near 1e-9, too small for any tolerance to mean something; with
    measured statistics every layer sees unit-scale activations, as in a trained network.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
    model.train()
    generator = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            model(torch.randn(8, 3, 224, 224, generator=generator))
    model.eval()


def make(out, name, build):
    torch.manual_seed(SEED)
    model = build(weights=None)
    calibrate(model)
    # ImageNet-normalized-like values: what a preprocessed image looks like to the model.
    x = torch.randn(BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        eager = model(x)
        frozen = torch.jit.freeze(torch.jit.trace(model, x))
        y = frozen(x)
    # Freezing folds batch norms into convolutions: close to eager, not bit-equal.
    diff = (eager - y).abs().max().item()
    if not torch.allclose(eager, y, rtol=1e-3, atol=1e-4):
        sys.exit("%s: the frozen module differs from eager by %g" % (name, diff))
    root = os.path.join(out, name)
    os.makedirs(os.path.join(root, "golden"), exist_ok=True)
    frozen.save(os.path.join(root, "model.pt"))
    write_tensor(os.path.join(root, "golden", "input_0.pb"), x.numpy().astype(np.float32),
                 "input")
    write_tensor(os.path.join(root, "golden", "output_0.pb"), y.numpy().astype(np.float32),
                 "logits")
    print("%s: %s, max |frozen - eager| %.3g, logits range [%.3g, %.3g]" %
          (name, os.path.join(root, "model.pt"), diff, y.min().item(), y.max().item()))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_torchscript.py <out-dir>")
    for name, build in MODELS.items():
        make(sys.argv[1], name, build)


if __name__ == "__main__":
    main()
