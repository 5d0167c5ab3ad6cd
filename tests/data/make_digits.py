#!/usr/bin/python3
"""Generate edgefleet's test models, golden data and PNGs from scikit-learn's digits.

Nothing is downloaded: the data is sklearn.datasets.load_digits() (bundled with
scikit-learn, 1797 8x8 images, pixel values 0..16) and the models are trained
with Debian's python3-torch 1.13 on the CPU.

Run with the system interpreter (the one that has torch):

    scripts/install-deps.sh --models && /usr/bin/python3 tests/data/make_digits.py

Outputs (all under tests/data/digits/, the directory is recreated):

    v1/, v2/, broken/          bundle source directories (see tests/data/README.md)
    heldout_png/NNN_L.png      held-out image NNN (row NNN of the golden batch), label L

Everything is seeded and single-threaded, so a rerun gives byte-identical files
with the same torch/onnx/numpy/scikit-learn/Pillow versions.
"""

import json
import os
import shutil
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "digits")

SPLIT_SEED = 0          # fixed stratified 20% held-out split, shared by every version
HELDOUT_FRACTION = 0.2
OPSETS = (10, 13)

# version id -> (semantic version, training seed, epochs)
TRAINED = {
    "v1": ("1.0.0", 1, 30),
    "v2": ("1.1.0", 2, 40),
}
BROKEN = ("broken", "1.2.0", 3)  # dir, version, seed of the noise added to v2's conv weights
BROKEN_NOISE = 8.0      # noise std as a multiple of each conv weight's std
BROKEN_MAX_ACCURACY = 0.30
MIN_ACCURACY = 0.95

torch.set_num_threads(1)
torch.set_num_interop_threads(1)
torch.use_deterministic_algorithms(True)


class DigitsCNN(nn.Module):
    """Conv3x3(1->8)+ReLU, Conv3x3(8->16)+ReLU, MaxPool2, Flatten, Linear(256->10).

    Exports to Conv, Relu, MaxPool, Flatten, Gemm only, which OpenCV 4.6 DNN runs.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def load_split():
    d = load_digits()
    images = d.images.astype(np.float32)  # (1797, 8, 8), 0..16
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, held_idx = train_test_split(
        idx, test_size=HELDOUT_FRACTION, stratify=labels, random_state=SPLIT_SEED)
    train_idx = np.sort(train_idx)
    held_idx = np.sort(held_idx)  # keep dataset order inside the held-out batch
    return images, labels, train_idx, held_idx


def to_input(images):
    """Model input: float32 [N,1,8,8], pixel/16."""
    return (images / 16.0).astype(np.float32)[:, None, :, :]


def train(seed, epochs, x, y):
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    batch = 32
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
    model.eval()
    return model


def predict(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float32)


def accuracy(logits, y):
    return float((logits.argmax(1) == y).mean())


def export(model, path, opset):
    dummy = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    torch.onnx.export(
        model, dummy, path,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=opset, do_constant_folding=True, export_params=True)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    return m


DTYPE_NAMES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64",
               onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT64: "int64",
               onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8",
               onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool"}


def io_spec(value_infos, initializers):
    out = []
    for vi in value_infos:
        if vi.name in initializers:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        out.append({"name": vi.name, "dtype": DTYPE_NAMES[tt.elem_type], "shape": shape})
    return out


def variant_spec(m, file_rel):
    opset = None
    for imp in m.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    ops = set()
    for n in m.graph.node:
        ops.add(n.op_type if n.domain in ("", "ai.onnx") else "%s:%s" % (n.domain, n.op_type))
    inits = {t.name for t in m.graph.initializer}
    return {
        "id": "onnx-op%d" % opset,
        "file": file_rel,
        "format": "onnx",
        "opset": opset,
        "operators": sorted(ops),
        "backends": [{"name": "opencv", "version": ">=4.5.0 <5.0.0"}],
        "inputs": io_spec(m.graph.input, inits),
        "outputs": io_spec(m.graph.output, inits),
    }


def write_tensor(path, array, name):
    t = numpy_helper.from_array(array, name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def write_bundle_dir(dirname, version, description, model, x_held, y_held):
    root = os.path.join(OUT, dirname)
    os.makedirs(os.path.join(root, "model"))
    os.makedirs(os.path.join(root, "golden", "heldout"))
    variants = []
    for opset in OPSETS:
        rel = "model/digits_op%d.onnx" % opset
        m = export(model, os.path.join(root, rel), opset)
        variants.append(variant_spec(m, rel))
    logits = predict(model, x_held)
    write_tensor(os.path.join(root, "golden/heldout/input_0.pb"), x_held, "input")
    write_tensor(os.path.join(root, "golden/heldout/output_0.pb"), logits, "logits")
    with open(os.path.join(root, "golden/labels.json"), "w") as f:
        json.dump({"heldout": [int(v) for v in y_held]}, f, separators=(",", ":"))
        f.write("\n")
    spec = {
        "name": "digits",
        "version": version,
        "description": description,
        "variants": variants,
        "preprocessing": {"layout": "NCHW", "color": "GRAY", "height": 8, "width": 8,
                          "scale": 1.0 / 255.0, "mean": [0.0], "std": [1.0]},
        "golden": [{"name": "heldout", "inputs": ["golden/heldout/input_0.pb"],
                    "outputs": ["golden/heldout/output_0.pb"]}],
        "labels": "golden/labels.json",
        "parity": {"atol": 0.0001, "rtol": 0.001, "min_top1_agreement": 0.99,
                   "min_accuracy": 0.9, "max_latency_factor": 3.0},
        "watch": {"window_s": 30, "min_requests": 50, "max_error_rate": 0.01,
                  "max_p95_latency_factor": 3.0},
    }
    with open(os.path.join(root, "bundle.json"), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    # Self-check: the files read back equal what we computed.
    assert np.array_equal(numpy_helper.to_array(onnx.load_tensor(
        os.path.join(root, "golden/heldout/output_0.pb"))), logits)
    return logits


def write_pngs(images_held, y_held):
    from PIL import Image
    d = os.path.join(OUT, "heldout_png")
    os.makedirs(d)
    pix = np.rint(images_held * 255.0 / 16.0).astype(np.uint8)
    for i, (p, lab) in enumerate(zip(pix, y_held)):
        Image.fromarray(p, mode="L").save(os.path.join(d, "%03d_%d.png" % (i, lab)), optimize=False)
    return pix


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    images, labels, train_idx, held_idx = load_split()
    x_train, y_train = to_input(images[train_idx]), labels[train_idx]
    x_held, y_held = to_input(images[held_idx]), labels[held_idx]
    print("split: %d train, %d held out (stratified, random_state=%d)"
          % (len(train_idx), len(held_idx), SPLIT_SEED))

    results = {}
    models = {}
    for vid, (version, seed, epochs) in TRAINED.items():
        model = train(seed, epochs, x_train, y_train)
        models[vid] = model
        desc = ("Test model: small CNN on scikit-learn digits (8x8 gray), seed %d, %d epochs."
                % (seed, epochs))
        logits = write_bundle_dir(vid, version, desc, model, x_held, y_held)
        results[vid] = logits
        acc = accuracy(logits, y_held)
        print("%s (%s): held-out accuracy %.4f" % (vid, version, acc))
        if acc < MIN_ACCURACY:
            sys.exit("%s accuracy %.4f below %.2f" % (vid, acc, MIN_ACCURACY))

    # broken: v2's weights with large noise (8x their std) on both conv layers' weights,
    # then rescaled back to the original std so logits keep a normal magnitude.
    bdir, bversion, bseed = BROKEN
    broken = DigitsCNN()
    broken.load_state_dict(models["v2"].state_dict())
    broken.eval()
    g = torch.Generator().manual_seed(bseed)
    with torch.no_grad():
        for conv in (broken.conv1, broken.conv2):
            w = conv.weight
            s = float(w.std())
            w.add_(torch.randn(w.shape, generator=g) * BROKEN_NOISE * s)
            w.mul_(s / float(w.std()))
    desc = ("Deliberately broken test model: v2 with large noise on its conv weights "
            "(self-consistent golden data, accuracy collapses).")
    results[bdir] = write_bundle_dir(bdir, bversion, desc, broken, x_held, y_held)
    bacc = accuracy(results[bdir], y_held)
    print("%s (%s): held-out accuracy %.4f, max |logit| %.2f"
          % (bdir, bversion, bacc, float(np.abs(results[bdir]).max())))
    if bacc >= BROKEN_MAX_ACCURACY:
        sys.exit("broken accuracy %.4f not below %.2f" % (bacc, BROKEN_MAX_ACCURACY))

    def agree(a, b):
        return float((results[a].argmax(1) == results[b].argmax(1)).mean())
    print("top-1 agreement v1/v2 %.4f, v2/broken %.4f, v1/broken %.4f"
          % (agree("v1", "v2"), agree("v2", "broken"), agree("v1", "broken")))

    pix = write_pngs(images[held_idx], y_held)
    # What a runtime sees after decoding the PNG and applying scale 1/255.
    x_png = (pix.astype(np.float32) / 255.0)[:, None, :, :]
    print("max |png/255 - v/16| = %.6f" % float(np.abs(x_png - x_held).max()))
    for vid, model in list(models.items()) + [(bdir, broken)]:
        lp = predict(model, x_png)
        print("%s: accuracy on PNG input %.4f, top-1 agreement with golden %.4f, max |diff| %.4f"
              % (vid, accuracy(lp, y_held), float((lp.argmax(1) == results[vid].argmax(1)).mean()),
                 float(np.abs(lp - results[vid]).max())))


if __name__ == "__main__":
    main()
