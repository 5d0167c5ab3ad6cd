#!/usr/bin/python3
"""The ONNX compatibility survey: each file's verdict on a backend against running it.

    /usr/bin/python3 tests/data/make_onnx_zoo.py --set survey build/release/testdata/onnx_zoo_survey
    python3 tests/data/survey_onnx_zoo.py [--backend opencv] [--edgefleet PATH] build/release/testdata/onnx_zoo_survey

For every <case>/model.onnx under the directory, runs `edgefleet model check --json
--run-refused --golden <case>/golden` and prints one line: the verdict before download, after
download, whether the file really runs and matches PyTorch on the backend (atol = rtol = 1e-3),
and the class: served, refused (true), FALSE REFUSAL or FALSE ACCEPT, with the first reason.
The README's survey table is this output, counted. Exit status 1 when there is a false accept.
"""
import argparse
import json
import os
import subprocess
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", default="opencv")
parser.add_argument("--edgefleet", default="build/release/deploy/edgefleet")
parser.add_argument("root")
args = parser.parse_args()
root = args.root
false_accepts = 0
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
        print("%-26s before=%-8s after=%-12s golden=%-6s %s %s" % (case, before, after, "match" if runs else "FAIL", kind, reason))
sys.exit(1 if false_accepts else 0)
