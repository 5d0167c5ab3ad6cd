#!/usr/bin/python3
"""Generate ONNX exports of torchvision classifiers, with golden data, for the tests or the survey.

torchvision classifiers with random weights (fixed seed; nothing is downloaded; every parameter
perturbed, so that no two biases are equal, as after training) and calibrated batch norms (as in make_torchscript.py), exported with torch.onnx.export
(do_constant_folding=True) at several opsets each, plus one golden input and the eager PyTorch
model's output on it. The files are too large to commit, so the build runs this script (the
tests set) into the build tree.

    /usr/bin/python3 tests/data/make_onnx_zoo.py [--set tests|survey] [--cache DIR] <out-dir>

--set tests (the default; what the build runs): MobileNetV2, ResNet-18, EfficientNet-B0 and
ShuffleNetV2 x1.0 at two opsets each, 8 cases: mobilenet_v2_op10, mobilenet_v2_op17,
resnet18_op10, resnet18_op17, efficientnet_b0_op13, efficientnet_b0_op17,
shufflenet_v2_x1_0_op13, shufflenet_v2_x1_0_op17.

--set survey: the compatibility survey (tests/data/README.md and the README's ONNX table); kept
in the repo, not run by the build or CI. mobilenet_v2, mobilenet_v3_small, resnet18,
squeezenet1_1, efficientnet_b0, shufflenet_v2_x1_0 and densenet121, each at opsets 10, 11, 13
and 17 (NAME_opN as above), except the pairs in SURVEY_EXCLUDED, which this torch cannot export:
shufflenet_v2_x1_0 at opset 10 (its channel split is prim::ConstantChunk on a dynamic shape,
which the exporter supports only from opset 11). 27 cases, about 580 MB.

Outputs, for each case NAME_opN of the set:

    <out-dir>/NAME_opN/model.onnx             input "input" float32 [batch,3,224,224],
                                              output "logits" float32 [batch,1000]
    <out-dir>/NAME_opN/golden/input_0.pb      ONNX TensorProto "input",  float32 [2,3,224,224]
    <out-dir>/NAME_opN/golden/output_0.pb     ONNX TensorProto "logits", float32 [2,1000]
    <out-dir>/STAMP                           the cache key, written last (a build output)

All opsets of a model share its weights, so their golden files are identical. Each export must
pass onnx.checker and import exactly opset N from the default domain, or the script fails.

--cache DIR: exporting takes a while and CI configures two build trees. The key is the sha256
of this file's bytes, the set's name and the torch, torchvision and onnx versions, so the two
sets never share an entry. If DIR/<key>/COMPLETE exists the files are copied from DIR/<key>/;
otherwise they are exported into <out-dir>, copied to DIR/<key>.tmp-<pid> (COMPLETE last) and
renamed to DIR/<key> (if another process renamed its copy there first, this one is dropped).
Stale DIR/*.tmp-* of killed runs may be deleted.
On 2 cores: the tests set about 45 s exporting (mostly building and calibrating the models),
8 s from the cache (importing torch and re-checking the files); the survey set about 90 s
exporting (densenet121 alone about 35 s), 12 s from the cache.

Run with Debian's interpreter (the one that has torch), not a pyenv/venv python3. Seeded and
single-threaded: two runs without the cache wrote byte-identical files (torch 1.13.0a0,
torchvision 0.14.1a0, onnx 1.12.0, Debian 12).
"""

import argparse
import hashlib
import os
import shutil
import sys
import time

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper

SEED = 0
BATCH = 2
CALIBRATION_BATCHES = 4
TESTS = [  # name, constructor, opsets
    ("mobilenet_v2", torchvision.models.mobilenet_v2, (10, 17)),
    ("resnet18", torchvision.models.resnet18, (10, 17)),
    ("efficientnet_b0", torchvision.models.efficientnet_b0, (13, 17)),
    ("shufflenet_v2_x1_0", torchvision.models.shufflenet_v2_x1_0, (13, 17)),
]
SURVEY_OPSETS = (10, 11, 13, 17)
SURVEY_EXCLUDED = {  # (name, opset): why torch 1.13's exporter cannot produce it
    # channel_shuffle's x.chunk(2, dim=1) on a dynamic batch: "Unsupported: ONNX export of
    # operator prim::ConstantChunk, unknown dimension size" below opset 11.
    ("shufflenet_v2_x1_0", 10): "prim::ConstantChunk on a dynamic shape needs opset 11",
}
SURVEY = [(name, build, tuple(o for o in SURVEY_OPSETS if (name, o) not in SURVEY_EXCLUDED))
          for name, build in (("mobilenet_v2", torchvision.models.mobilenet_v2),
                              ("mobilenet_v3_small", torchvision.models.mobilenet_v3_small),
                              ("resnet18", torchvision.models.resnet18),
                              ("squeezenet1_1", torchvision.models.squeezenet1_1),
                              ("efficientnet_b0", torchvision.models.efficientnet_b0),
                              ("shufflenet_v2_x1_0", torchvision.models.shufflenet_v2_x1_0),
                              ("densenet121", torchvision.models.densenet121))]
SETS = {"tests": TESTS, "survey": SURVEY}
FILES = ("model.onnx", os.path.join("golden", "input_0.pb"), os.path.join("golden", "output_0.pb"))

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def cases(models):
    return [("%s_op%d" % (name, opset), name, opset)
            for name, _, opsets in models for opset in opsets]


def write_tensor(path, array, name):
    t = numpy_helper.from_array(array, name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def perturb(model):
    """Adds small noise to every parameter, as training would leave them.

    torchvision initializes biases to zeros, and torch's exporter replaces initializers of equal
    value by Identity nodes of one of them: an untrained model exports with dozens of Identity
    nodes that no trained model has (and that OpenCV 4.6 cannot import).
    """
    generator = torch.Generator().manual_seed(SEED + 3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01)


def calibrate(model):
    """Sets the batch norms' running statistics from random batches, as training would.

    As in make_torchscript.py; only the batch norms are in training mode, so EfficientNet's
    stochastic depth does not drop residual branches while the statistics are measured.
    """
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
            m.train()
    generator = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            model(torch.randn(8, 3, 224, 224, generator=generator))
    model.eval()


def default_opsets(model):
    return [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]


def export(model, x, path, opset):
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    exported = onnx.load(path)
    onnx.checker.check_model(exported)
    if default_opsets(exported) != [opset]:
        sys.exit("%s: asked for opset %d, the graph imports %s"
                 % (path, opset, default_opsets(exported)))


def make_all(models, out):
    for name, build, opsets in models:
        start = time.monotonic()
        torch.manual_seed(SEED)
        model = build(weights=None)
        perturb(model)
        calibrate(model)
        # ImageNet-normalized-like values: what a preprocessed image looks like to the model.
        x = torch.randn(BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(SEED + 1))
        with torch.no_grad():
            y = model(x)
        how = "exported; built and calibrated in %.1f s" % (time.monotonic() - start)
        for opset in opsets:
            start = time.monotonic()
            root = os.path.join(out, "%s_op%d" % (name, opset))
            os.makedirs(os.path.join(root, "golden"), exist_ok=True)
            export(model, x, os.path.join(root, "model.onnx"), opset)
            write_tensor(os.path.join(root, FILES[1]), x.numpy().astype(np.float32), "input")
            write_tensor(os.path.join(root, FILES[2]), y.numpy().astype(np.float32), "logits")
            report(name, opset, root, start, "%s, logits range [%.3g, %.3g]"
                   % (how, y.min().item(), y.max().item()))
            how = "exported"


def report(name, opset, root, start, how):
    size = os.path.getsize(os.path.join(root, "model.onnx"))
    print("%-18s opset %2d  %5.1f MB  %6.2f s  %s"
          % (name, opset, size / 1e6, time.monotonic() - start, how), flush=True)


def copy_set(models, src, dst, verbose=False):
    for case, name, opset in cases(models):
        start = time.monotonic()
        os.makedirs(os.path.join(dst, case, "golden"), exist_ok=True)
        for f in FILES:
            shutil.copyfile(os.path.join(src, case, f), os.path.join(dst, case, f))
        if verbose:
            report(name, opset, os.path.join(dst, case), start, "from cache")


def cache_key(set_name):
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    h.update(b"\0" + set_name.encode())
    for version in (torch.__version__, torchvision.__version__, onnx.__version__):
        h.update(b"\0" + version.encode())
    return h.hexdigest()


def store(models, out, cache, key):
    os.makedirs(cache, exist_ok=True)
    tmp = os.path.join(cache, "%s.tmp-%d" % (key, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    copy_set(models, out, tmp)
    with open(os.path.join(tmp, "COMPLETE"), "w") as f:
        f.write(key + "\n")
    try:
        os.rename(tmp, os.path.join(cache, key))
    except OSError:  # another process stored its (identical) set first
        shutil.rmtree(tmp, ignore_errors=True)


def check(models, out):
    """Checks each of the set's models and golden files in <out>: one line each; returns success."""
    ok = True
    for case, _, opset in cases(models):
        root = os.path.join(out, case)
        problems = []
        try:
            model = onnx.load(os.path.join(root, "model.onnx"))
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:  # a broken file raises from the parser or from the checker
            problems.append("onnx.checker: %s" % str(e).strip().splitlines()[0])
        else:
            if default_opsets(model) != [opset]:
                problems.append("opset imports %s" % default_opsets(model))
            for values, want in ((model.graph.input, ("input", "batch", 3, 224, 224)),
                                 (model.graph.output, ("logits", "batch", 1000))):
                got = [(v.name,) + tuple(d.dim_param or d.dim_value
                                         for d in v.type.tensor_type.shape.dim) for v in values]
                if got != [want]:
                    problems.append("graph %s %s, want %s" % (
                        "inputs" if want[0] == "input" else "outputs", got, [want]))
        for f, name, shape in ((FILES[1], "input", [BATCH, 3, 224, 224]),
                               (FILES[2], "logits", [BATCH, 1000])):
            try:
                with open(os.path.join(root, f), "rb") as fp:
                    t = onnx.load_tensor_from_string(fp.read())
                if t.name != name or list(t.dims) != shape \
                        or t.data_type != onnx.TensorProto.FLOAT:
                    problems.append("%s: %s %s type %d" % (f, t.name, list(t.dims), t.data_type))
            except Exception as e:
                problems.append("%s: %s" % (f, e))
        print("check %-26s %s" % (case, "; ".join(problems) or "onnx.checker ok"))
        ok = ok and not problems
    return ok


def main():
    parser = argparse.ArgumentParser(description="Export the ONNX test model zoo.")
    parser.add_argument("--set", choices=sorted(SETS), default="tests",
                        help="tests (the default; what the build runs) or survey")
    parser.add_argument("--cache", metavar="DIR", help="reuse/store exports under DIR/<key>")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    start = time.monotonic()
    models = SETS[args.set]
    if args.set == "survey":
        for (name, opset), why in SURVEY_EXCLUDED.items():
            print("%-18s opset %2d  excluded: %s" % (name, opset, why), flush=True)
    key = cache_key(args.set)
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = os.path.join(args.out_dir, "STAMP")
    if os.path.exists(stamp):
        os.remove(stamp)  # an interrupted run must leave no stamp
    cached = args.cache and os.path.isfile(os.path.join(args.cache, key, "COMPLETE"))
    if cached:
        try:
            copy_set(models, os.path.join(args.cache, key), args.out_dir, verbose=True)
        except OSError as e:
            print("cache %s unusable (%s), exporting" % (key, e), flush=True)
            cached = False
    if not cached:
        make_all(models, args.out_dir)
        if args.cache:
            store(models, args.out_dir, args.cache, key)
    check_start = time.monotonic()
    if not check(models, args.out_dir):
        sys.exit("make_onnx_zoo.py: some files in %s are broken" % args.out_dir)
    with open(stamp, "w") as f:
        f.write(key + "\n")
    print("total %.1f s (%s; checks %.1f s), key %s" % (
        time.monotonic() - start, "from cache" if cached else "exported",
        time.monotonic() - check_start, key))


if __name__ == "__main__":
    main()
