#!/usr/bin/env python3
"""Issue 6, acceptance 2: the dashboard in a real browser while the demo runs.

Installs playwright-core with `npm ci` (pinned in package-lock.json, into tests/browser/
node_modules; skipped when that exact version is there), starts scripts/demo.sh interactively
with the build under test, waits for its summary, runs dashboard_check.js (Debian's chromium,
headless) against the dashboard URL it printed, checks the screenshot it saved
(ARTIFACTS/dashboard.png, kept as the test's artifact) is a real picture, then sends the demo
SIGINT (Ctrl-C) and checks it exits 0 and leaves no process behind.
Python 3 standard library only.

  browser_test.py --source-dir DIR --build-dir DIR --artifacts-dir DIR [--max-seconds 180]
"""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "demo"))
from demo_run import DemoRun  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def ok(name, condition, detail=""):
    print(f"{'ok  ' if condition else 'FAIL'} {name}" + (f": {detail}" if detail else ""),
          flush=True)
    return condition


def ensure_playwright():
    """npm ci unless node_modules already holds the locked playwright-core; False on failure."""
    with open(os.path.join(HERE, "package-lock.json")) as f:
        locked = json.load(f)["packages"]["node_modules/playwright-core"]["version"]
    installed = os.path.join(HERE, "node_modules", "playwright-core", "package.json")
    try:
        with open(installed) as f:
            if json.load(f)["version"] == locked:
                return True
    except (OSError, ValueError, KeyError):
        pass
    if not shutil.which("npm"):
        return ok("npm is installed", False, "run scripts/install-deps.sh (nodejs, npm)")
    try:
        res = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                             cwd=HERE, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return ok(f"npm ci installs playwright-core {locked}", False,
                  "no answer within 300 s: is the npm registry reachable from this machine?")
    return ok(f"npm ci installs playwright-core {locked}", res.returncode == 0,
              "" if res.returncode == 0 else
              "failed (is the npm registry reachable from this machine?):\n"
              + (res.stdout + res.stderr)[-2000:])


def png_is_a_picture(path):
    """(ok, detail): a PNG of at least 800x600 whose pixels are not all one value."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return False, str(e)
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False, "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    try:
        distinct = len(set(zlib.decompress(idat)))
    except zlib.error as e:
        return False, f"corrupt image data: {e}"
    detail = f"{width}x{height}, {len(data)} bytes, {distinct} distinct byte values"
    return width >= 800 and height >= 600 and len(data) > 20000 and distinct >= 32, detail


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--artifacts-dir", required=True)
    parser.add_argument("--max-seconds", type=float, default=180)
    args = parser.parse_args()

    have_chromium = os.access(CHROMIUM, os.X_OK)
    if not ok("chromium is installed", have_chromium,
              "" if have_chromium else f"{CHROMIUM} missing: run scripts/install-deps.sh"):
        return 1
    if not ensure_playwright():
        return 1
    os.makedirs(args.artifacts_dir, exist_ok=True)
    screenshot = os.path.join(args.artifacts_dir, "dashboard.png")
    if os.path.exists(screenshot):
        os.remove(screenshot)

    run = DemoRun(args.source_dir, args.build_dir, interactive=True)
    print(f"demo: running scripts/demo.sh interactively (work directory {run.work})", flush=True)
    good = True
    killed = {}
    try:
        m = run.wait_for_line(r"^  dashboard: (http://127\.0\.0\.1:\d+/)$", args.max_seconds + 20)
        good &= ok("the demo printed its summary and the dashboard URL", m is not None)
        ready = m and run.wait_for_line(r"Press Ctrl-C to stop everything", 30)
        good &= ok("the demo waits for Ctrl-C", bool(ready))
        if ready:
            url = m.group(1)
            try:
                res = subprocess.run(["node", os.path.join(HERE, "dashboard_check.js"), url,
                                      screenshot], cwd=HERE, capture_output=True, text=True,
                                     timeout=180)
                print(res.stdout + res.stderr, end="", flush=True)
                good &= ok("dashboard_check.js passed in chromium", res.returncode == 0,
                           f"exit status {res.returncode}")
            except subprocess.TimeoutExpired:
                good &= ok("dashboard_check.js finished", False, "still running after 180 s")
            shot_ok, detail = png_is_a_picture(screenshot)
            good &= ok(f"the screenshot {screenshot} is a real picture", shot_ok, detail)

        if run.proc.poll() is None:  # Ctrl-C: SIGINT to the terminal's foreground group
            os.killpg(run.proc.pid, signal.SIGINT)
        rc = run.wait(30)
        good &= ok("the demo exits within 30 s of SIGINT", rc is not None)
        good &= ok("it exits 0 (Ctrl-C is how the demo ends)", rc == 0, f"exit status {rc}")
        try:
            db = sqlite3.connect(f"file:{os.path.join(run.work, 'collector.db')}?mode=ro",
                                 uri=True)
            online = dict(db.execute("SELECT device, online FROM devices"))
            db.close()
        except sqlite3.Error as e:
            online = str(e)
        good &= ok("the agents stopped cleanly: the collector stored all three offline",
                   online == {"box-1": 0, "box-2": 0, "box-3": 0}, str(online))
    finally:
        killed = run.stop()
    good &= ok("no process the demo started is left", not killed,
               "; ".join(f"{pid} {cmd}" for pid, cmd in killed.items()))

    return run.finish(good, f"screenshot kept: {screenshot}", args.artifacts_dir,
                      "fleet_dashboard_browser")


if __name__ == "__main__":
    sys.exit(main())
