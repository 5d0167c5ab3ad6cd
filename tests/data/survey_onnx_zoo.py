import json, subprocess, sys, os
root = sys.argv[1]
rows = []
for case in sorted(os.listdir(root)):
    d = os.path.join(root, case)
    if not os.path.isfile(os.path.join(d, "model.onnx")): continue
    r = subprocess.run(["build/release/deploy/edgefleet", "model", "check", "--json", "--run-refused",
                        "--backends-dir", "/tmp/bk", os.path.join(d, "model.onnx"), "--golden", os.path.join(d, "golden")],
                       capture_output=True, text=True)
    rep = json.loads(r.stdout)[0]
    for b in rep["backends"]:
        if b["backend"] != "opencv": continue
        before = b["before_download"]; after = b["after_download"]; golden = b.get("golden", "")
        runs = golden == "match"
        served = b["serves"]
        if served and runs: kind = "served"
        elif not served and runs: kind = "FALSE REFUSAL"
        elif served and not runs: kind = "FALSE ACCEPT"
        elif before in ("runs", "unknown") and not runs: kind = "accepted before download, refused after (%s)" % after
        else: kind = "refused (true)"
        reason = (b["reasons"] or [b.get("after_download_reason", "")])[0][:110] if not served else ""
        print("%-26s before=%-8s after=%-12s golden=%-6s %s %s" % (case, before, after, "match" if runs else "FAIL", kind, reason))
