#!/usr/bin/python3
"""The ONNX compatibility survey: each file's verdict on a backend against running it.

    /usr/bin/python3 tests/data/make_onnx_zoo.py --set survey build/release/testdata/onnx_zoo_survey
    python3 tests/data/survey_onnx_zoo.py [--backend opencv] [--edgefleet PATH] build/release/testdata/onnx_zoo_survey

For every <case>/model.onnx under the directory, runs `edgefleet model check --json
--run-refused --golden <case>/golden` and prints one line: the verdict before download, after
download, whether the file really runs and matches PyTorch on the backend (atol = rtol = 1e-3),
and the class: served, refused (true), FALSE REFUSAL or FALSE ACCEPT, with the first reason.
A file refused as exported is then lowered (`edgefleet model lower --for <backend>-<major.minor>
--golden <case>/golden`, which checks the lowered file on the backend before writing it), and
the lowered file checked again: "served after lowering" when it runs before download and
matches, else the lowering's refusal. The README's survey table is this output, counted. Exit
status 1 when there is a false accept, as exported or lowered.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", default="opencv")
parser.add_argument("--edgefleet", default="build/release/deploy/edgefleet")
parser.add_argument("--lower-for", default="opencv-4.6", help="lowering target ('' for none)")
parser.add_argument("root")
args = parser.parse_args()
root = args.root
false_accepts = 0


def lowered(d, kind):
    """The class of a refused file after `model lower`, and why."""
    global false_accepts
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lowered.onnx")
        low = subprocess.run([args.edgefleet, "model", "lower", os.path.join(d, "model.onnx"),
                              "-o", out, "--for", args.lower_for,
                              "--golden", os.path.join(d, "golden")],
                             capture_output=True, text=True)
        if low.returncode != 0:
            why = low.stderr.strip().splitlines()[0] if low.stderr.strip() else "failed"
            return kind + "; not lowered", why[why.find("cannot lower"):][:110]
        check = subprocess.run([args.edgefleet, "model", "check", "--json", "--run-refused", out,
                                "--golden", os.path.join(d, "golden")],
                               capture_output=True, text=True)
        for b in json.loads(check.stdout)[0]["backends"]:
            if b["backend"] != args.backend:
                continue
            if b["serves"] and b.get("golden") == "match":
                steps = [l.strip() for l in low.stdout.splitlines()[1:-1]]
                return kind + "; SERVED AFTER LOWERING", "; ".join(steps)[:110]
            if b["serves"]:
                false_accepts += 1
                return kind + "; FALSE ACCEPT after lowering", ""
        return kind + "; lowered but not served", ""


for case in sorted(os.listdir(root)):
    d = os.path.join(root, case)
    if not os.path.isfile(os.path.join(d, "model.onnx")): continue
    r = subprocess.run([args.edgefleet, "model", "check", "--json", "--run-refused",
                        os.path.join(d, "model.onnx"), "--golden", os.path.join(d, "golden")],
                       capture_output=True, text=True)
    rep = json.loads(r.stdout)[0]
    for b in rep["backends"]:
        if b["backend"] != args.backend:
            continue
        before = b["before_download"]; after = b["after_download"]; golden = b.get("golden", "")
        runs = golden == "match"
        served = b["serves"]
        if served and runs: kind = "served"
        elif not served and runs: kind = "FALSE REFUSAL"
        elif served and not runs:
            kind = "FALSE ACCEPT"
            false_accepts += 1
        elif before in ("runs", "unknown") and not runs: kind = "accepted before download, refused after (%s)" % after
        else: kind = "refused (true)"
        reason = (b["reasons"] or [b.get("after_download_reason", "")])[0][:110] if not served else ""
        if not served and args.lower_for:
            kind, reason = lowered(d, kind)
        print("%-26s before=%-8s after=%-12s golden=%-6s %s %s" % (case, before, after, "match" if runs else "FAIL", kind, reason))
sys.exit(1 if false_accepts else 0)
