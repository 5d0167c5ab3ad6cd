#!/usr/bin/python3
"""Development check (not a project dependency): can OpenCV DNN run the generated models?

    apt-get install -y python3-opencv python3-onnx   # Debian 12: OpenCV 4.6
    /usr/bin/python3 tests/data/check_opencv.py

For every bundle source directory under tests/data/digits and every model variant,
loads the ONNX file with cv2.dnn.readNetFromONNX, runs the golden held-out batch and
prints the max abs diff against the golden (torch) outputs, top-1 agreement, accuracy
against labels and whether the parity tolerance (bundle.json parity.atol/rtol) holds.
Also runs the held-out PNGs through cv2.imread + cv2.dnn.blobFromImage with the
bundle's preprocessing scale (the path a runtime takes on real images).
Exits non-zero if an opset-10 model fails to load or misses the tolerance.
"""

import glob
import json
import os
import sys

import cv2
import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "digits")


def main():
    print("OpenCV", cv2.__version__)
    pngs = sorted(glob.glob(os.path.join(DIGITS, "heldout_png", "*.png")))
    failed = False
    for vdir in ("v1", "v2", "broken"):
        root = os.path.join(DIGITS, vdir)
        spec = json.load(open(os.path.join(root, "bundle.json")))
        x = numpy_helper.to_array(onnx.load_tensor(os.path.join(root, spec["golden"][0]["inputs"][0])))
        gold = numpy_helper.to_array(onnx.load_tensor(os.path.join(root, spec["golden"][0]["outputs"][0])))
        labels = np.array(json.load(open(os.path.join(root, spec["labels"])))["heldout"])
        atol, rtol = spec["parity"]["atol"], spec["parity"]["rtol"]
        pp = spec["preprocessing"]
        for var in spec["variants"]:
            tag = "%s %s" % (vdir, var["id"])
            try:
                net = cv2.dnn.readNetFromONNX(os.path.join(root, var["file"]))
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
                net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
                net.setInput(x, var["inputs"][0]["name"])
                out = net.forward(var["outputs"][0]["name"])
            except cv2.error as e:
                print("%s: LOAD/RUN FAILED: %s" % (tag, str(e).strip().splitlines()[-1]))
                failed |= var["opset"] == 10
                continue
            diff = np.abs(out - gold)
            ok = bool(np.all(diff <= atol + rtol * np.abs(gold)))
            agree = float((out.argmax(1) == gold.argmax(1)).mean())
            acc = float((out.argmax(1) == labels).mean())
            # Single-image run too (batch 1), to exercise the dynamic batch axis.
            net.setInput(x[:1], var["inputs"][0]["name"])
            d1 = float(np.abs(net.forward(var["outputs"][0]["name"]) - gold[:1]).max())
            # PNG path: imread gray + blobFromImage(scale).
            imgs = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in pngs]
            blob = cv2.dnn.blobFromImages(imgs, scalefactor=pp["scale"],
                                          size=(pp["width"], pp["height"]), mean=0, swapRB=False)
            net.setInput(blob, var["inputs"][0]["name"])
            outp = net.forward(var["outputs"][0]["name"])
            acc_png = float((outp.argmax(1) == labels).mean())
            agree_png = float((outp.argmax(1) == gold.argmax(1)).mean())
            print("%s: batch %d max|diff| %.3g (batch-1 %.3g), within atol/rtol %s, "
                  "top-1 agreement %.4f, accuracy %.4f; PNG path accuracy %.4f, agreement %.4f"
                  % (tag, len(x), float(diff.max()), d1, ok, agree, acc, acc_png, agree_png))
            failed |= (var["opset"] == 10 and not ok)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
