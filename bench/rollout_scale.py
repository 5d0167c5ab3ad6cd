#!/usr/bin/python3
"""Benchmark (issue 15, acceptance 5): `edgefleet rollout` over simulated devices.

    bench/rollout_scale.py [--devices 10000] [--cli PATH]

Phase 1: `edgefleet simulate` plays N devices (group lab, a telemetry window per second); v1 of
the digits bundle goes out in waves of 1%, 10% and 100%. Phase 2: N other devices (group flaky),
15% of which fail updates at parity, first take v1 (their restore point), then v2 in the same
waves: the rollout must halt and restore every device it released.

Measured: each rollout's wall time, and per wave boundary the time from the driver's
`event=wave_succeeded` line to the broker delivering the last of the next wave's desired-state
documents (a `mosquitto_sub` on every device's desired topic, timed as lines arrive), with when
the driver had them in its outbox and when it saw the broker acknowledge them all
(`event=documents_at_broker`). Limit: under 3 s for the last wave (0.9 N documents). Exits 1 on a
breach or a wrong outcome.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_tools  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Lines:
    """Reads a process's stdout in a thread, keeping (monotonic time, line)."""

    def __init__(self, proc):
        self.items = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc):
        for line in proc.stdout:
            with self.lock:
                self.items.append((time.monotonic(), line.rstrip("\n")))

    def snapshot(self):
        with self.lock:
            return list(self.items)


def setup_keys_and_bundles(cli, work):
    run = lambda *a: subprocess.run([cli, *a], check=True, stdout=subprocess.DEVNULL)  # noqa: E731
    for role in ("root", "release", "deploy"):
        run("keygen", "--out", os.path.join(work, role))
    root = os.path.join(work, "root.json")
    run("trust", "init", "--root-key", os.path.join(work, "root.key"), "--release-key",
        os.path.join(work, "release.pub"), "--deploy-key", os.path.join(work, "deploy.pub"),
        "-o", root)
    www = os.path.join(work, "www")
    os.makedirs(www)
    for name in ("v1", "v2"):
        run("bundle", "create", os.path.join(ROOT, "tests/data/digits", name), "-o",
            os.path.join(www, f"{name}.efb"), "--key", os.path.join(work, "release.key"))
    return root, www


def rollout(cli, args, work, rid, bundle_url, group, sub):
    start = time.monotonic()
    proc = subprocess.Popen(
        [cli, "rollout", "start", "--model", "digits", "--bundle", bundle_url, "--group", group,
         "--waves", "1%,10%,100%", "--fleet", "bench", "--broker", args["broker"], "--deploy-key",
         os.path.join(work, "deploy.key"), "--db", os.path.join(work, "rollouts.db"), "--id", rid,
         "--trust", args["root"], "--wave-timeout", "5m", "--discover", "5s"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(work, f"{rid}.err"), "w"), text=True)
    out = Lines(proc)
    code = proc.wait(1800)
    out.thread.join(10)
    elapsed = time.monotonic() - start
    lines = out.snapshot()
    with open(os.path.join(work, f"{rid}.out"), "w") as f:
        f.writelines(f"{t - start:.3f} {line}\n" for t, line in lines)
    # Per wave boundary: wave_succeeded -> the last document of the next wave at the broker.
    gaps = []
    docs = sub.snapshot()
    for t, line in lines:
        if "event=wave_succeeded" not in line:
            continue
        wave = int(line.split("wave=")[1].split("/")[0])
        released = [tt for tt, ll in lines if tt >= t and f"wave={wave + 1} event=released" in ll]
        if not released:
            continue
        arrived = [tt for tt, _ in docs if tt >= t]
        n = len(released)
        # The driver prints the next wave's line once its documents are signed, stored and in
        # its outbox; the rest is publishing through the broker.
        handed = [tt for tt, ll in lines if tt >= t and ll.split(" ")[1].startswith(
            f"wave={wave + 1}/")]
        queued = handed[0] - t if handed else float("nan")
        # The driver's line once the broker acknowledged all of them (to within ~0.2 s).
        acked = [tt for tt, ll in lines if tt >= t and
                 f"wave={wave + 1} event=documents_at_broker" in ll]
        at_broker = acked[0] - t if acked else float("nan")
        last = arrived[n - 1] - t if len(arrived) >= n else float("nan")
        gaps.append((wave, n, last, queued, at_broker))
    return code, elapsed, gaps, lines


def status(cli, work, rid):
    r = subprocess.run([cli, "rollout", "status", rid, "--db", os.path.join(work, "rollouts.db"),
                        "--json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def wait_devices(broker_port, prefix, n, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker_port), "-t",
                            "edgefleet/v1/bench/device/+/status", "--retained-only", "-W", "3",
                            "-F", "%t %p"], capture_output=True, text=True)
        online = sum(1 for line in r.stdout.splitlines()
                     if line.startswith(f"edgefleet/v1/bench/device/{prefix}")
                     and '"online":true' in line)
        if online >= n:
            return
        time.sleep(1)
    raise RuntimeError(f"{prefix}: fewer than {n} devices online after {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build/release/deploy/edgefleet"))
    a = ap.parse_args()
    print(f"load average before: {fleet_tools.loadavg()}", flush=True)
    ok = True
    work = tempfile.mkdtemp(prefix="edgefleet-rollout-")
    try:
        with fleet_tools.Processes() as procs:
            root, www = setup_keys_and_bundles(a.cli, work)
            port = fleet_tools.start_broker(procs, work)
            serve_port_file = os.path.join(work, "serve.port")
            procs.start([a.cli, "serve", "--dir", www, "--http", "127.0.0.1:0", "--port-file",
                         serve_port_file], os.path.join(work, "serve.log"))
            http = fleet_tools.wait_port_file(serve_port_file)
            args = {"broker": f"127.0.0.1:{port}", "root": root}
            sub_proc = procs.start(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t",
                                    "edgefleet/v1/bench/device/+/desired", "-F", "%t"],
                                   os.path.join(work, "sub.log"), stdout=subprocess.PIPE,
                                   text=True)
            sub = Lines(sub_proc)

            def sim(prefix, group, share):
                return fleet_tools.start_simulators(
                    procs, a.cli, work, args["broker"], "bench", a.devices, prefix,
                    ["--group", group, "--duration", "2h", "--event-every-s", "60",
                     "--update-s", "2", "--fail-share", share])

            def stop(sims):
                for p, _ in sims:
                    p.terminate()
                for p, _ in sims:
                    p.wait(60)

            print("| rollout | devices | outcome | wall time | wave -> next wave's last document "
                  "at the broker |\n|---|---|---|---|---|", flush=True)

            def row(rid, code, elapsed, gaps, st):
                g = "; ".join(f"{w}->{w + 1} ({n:,} docs): {s:.2f} s (in the outbox after {q:.2f} s, "
                              f"acknowledged by the broker after {b:.2f} s)"
                              for w, n, s, q, b in gaps)
                print(f"| {rid} | {a.devices:,} | {st.get('state')} (exit {code}) | "
                      f"{elapsed:.1f} s | {g or '-'} |", flush=True)

            lab = sim("lab-", "lab", "0")
            wait_devices(port, "lab-", a.devices)
            code, elapsed, gaps, _ = rollout(a.cli, args, work, "lab-v1",
                                             f"http://127.0.0.1:{http}/v1.efb", "lab", sub)
            st = status(a.cli, work, "lab-v1")
            row("lab-v1", code, elapsed, gaps, st)
            if code != 0 or st.get("state") != "completed":
                ok = False
            last = [s for w, n, s, q, b in gaps if w == 2]
            if not last or not last[0] < 3:
                ok = False
                print(f"  BREACH: last wave's documents took {last} s (limit 3 s)")
            stop(lab)

            flaky = sim("flaky-", "flaky", "0.15")
            wait_devices(port, "flaky-", a.devices)
            for rid, bundle, expect_code, expect_state in (("flaky-v1", "v1", 0, "completed"),
                                                           ("flaky-v2", "v2", 2, "halted")):
                code, elapsed, gaps, _ = rollout(a.cli, args, work, rid,
                                                 f"http://127.0.0.1:{http}/{bundle}.efb",
                                                 "flaky", sub)
                st = status(a.cli, work, rid)
                row(rid, code, elapsed, gaps, st)
                if code != expect_code or st.get("state") != expect_state:
                    ok = False
                    print(f"  BREACH: {rid} expected {expect_state} (exit {expect_code})")
                if rid == "flaky-v2":
                    devs = st.get("device_list", [])
                    released = [d for d in devs if d.get("serial", 0) != 0]
                    restored = [d for d in released if d.get("state") == "restored"]
                    failed = [d for d in released if d.get("outcome") == "failed"]
                    print(f"  flaky-v2: released {len(released)}, failed {len(failed)}, "
                          f"restored {len(restored)}; reason: {st.get('reason')}")
                    if len(restored) != len(released):
                        ok = False
                        print("  BREACH: not every released device was restored")
            stop(flaky)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {fleet_tools.loadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
