#!/usr/bin/env python3
"""scripts/demo.sh's helpers: ports, waits and the checks behind every line the demo prints.

Each subcommand prints what it found on stdout and exits 0, or prints why on stderr and exits 1,
so demo.sh only claims what one of these confirmed. Python 3 standard library only.

  free-port                                   a free TCP port on 127.0.0.1
  port-free PORT                              exit 0 when 127.0.0.1:PORT can be bound
  wait-tcp PORT SECONDS                       until 127.0.0.1:PORT accepts a connection
  patch-watch BUNDLE_JSON KEY=VALUE...        sets fields of the manifest's watch policy
  wait-online URL SECONDS DEVICE...           until the collector lists the devices online
  agent AGENT_BIN CONFIG MODEL [checks]       the agent's own journal (status --json):
      --active V        V (or none) is active              --committed V  a deployment of V committed
      --failed V        a deployment of V failed (prints its reason)   --never V  no deployment of V
  retained-desired PORT FLEET                 every retained desired state (topic, serial, versions)
  waves PROGRESS_LOG                          devices per wave from a rollout's progress lines
  wait-collector URL SECONDS MODEL [--active DEVICE=V]... [--failed DEVICE=V]... [--rollouts N]
                                              until the collector's API shows all of these
  summary DB SNAPSHOT ROLLOUT_LIST_JSON MODEL the summary table, from a copy of the collector
                                              database taken at once (SNAPSHOT)
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

TERMINAL = ("committed", "failed", "rolled_back", "abandoned", "rejected")


def die(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def get_json(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as res:
        return json.loads(res.read())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(port)))
        except OSError:
            sys.exit(1)


def wait_tcp(port, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    die(f"nothing accepted connections on 127.0.0.1:{port} within {seconds} s")


def patch_watch(path, *settings):
    with open(path) as f:
        doc = json.load(f)
    for setting in settings:
        key, _, value = setting.partition("=")
        doc["watch"][key] = int(value) if value.isdigit() else float(value)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def devices_by_name(url):
    return {d["device"]: d for d in get_json(url.rstrip("/") + "/api/devices")["devices"]}


def wait_online(url, seconds, *devices):
    deadline = time.monotonic() + float(seconds)
    seen = {}
    while time.monotonic() < deadline:
        try:
            seen = devices_by_name(url)
            if all(seen.get(d, {}).get("online") for d in devices):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    missing = [d for d in devices if not seen.get(d, {}).get("online")]
    die(f"the collector does not list {', '.join(missing)} online after {seconds} s")


def agent_status(agent_bin, config):
    out = subprocess.run([agent_bin, "status", "--config", config, "--json"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        die(f"{agent_bin} status --config {config} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def active_version(status, model):
    for m in status.get("models", []):
        if m["name"] == model and m.get("active"):
            return m["active"]["version"]
    return None


def agent_check(agent_bin, config, model, *checks):
    status = agent_status(agent_bin, config)
    deps = [d for d in status.get("deployments", []) if d["model"] == model]
    it = iter(checks)
    said = []
    for flag in it:
        version = next(it)
        states = [d["state"] for d in deps if d["version"] == version]
        if flag == "--active":
            found = active_version(status, model)
            if found != (None if version == "none" else version):
                die(f"{config}: {model} active version is {found}, expected {version}")
            said.append(f"active={version}")
        elif flag == "--committed":
            if "committed" not in states:
                die(f"{config}: no committed deployment of {model} {version} (states: {states})")
            said.append(f"committed={version}")
        elif flag == "--failed":
            failed = [d for d in deps if d["version"] == version and d["state"] == "failed"]
            if not failed:
                die(f"{config}: no failed deployment of {model} {version} (states: {states})")
            said.append(f"failed={version}")
            print(failed[-1]["reason"])
        elif flag == "--never":
            if states:
                die(f"{config}: a deployment of {model} {version} exists (states: {states})")
            said.append(f"never={version}")
        else:
            die(f"agent: unknown check {flag}")
    print(" ".join(said), file=sys.stderr)


def retained_desired(port, fleet):
    # -W ends the subscription after the retained messages arrived (mosquitto_sub then exits 27).
    out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-v",
                          "--retained-only", "-W", "2", "-t", f"edgefleet/v1/{fleet}/+/+/desired"],
                         capture_output=True, text=True, timeout=20)
    for line in out.stdout.splitlines():
        topic, _, payload = line.partition(" ")
        if not payload:
            continue  # an empty retained message clears the topic
        try:
            signed = json.loads(payload)["signed"]
            versions = ",".join(f"{m['name']}={m['version']}" for m in signed["models"])
            print(f"{topic} serial={signed['serial']} models={versions or '-'}")
        except (ValueError, KeyError, TypeError):
            print(f"{topic} unreadable")


def waves(path):
    per_wave = {}
    with open(path) as f:
        for line in f:
            fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if "device" in fields and "wave" in fields:
                devices = per_wave.setdefault(int(fields["wave"]), [])
                if fields["device"] not in devices:
                    devices.append(fields["device"])
    print("; ".join(f"wave {w}: {', '.join(d)}" for w, d in sorted(per_wave.items())))


def wait_collector(url, seconds, model, *args):
    active, failed, rollouts = {}, {}, 0
    it = iter(args)
    for flag in it:
        value = next(it)
        if flag == "--active":
            d, v = value.split("=")
            active[d] = v
        elif flag == "--failed":
            d, v = value.split("=")
            failed[d] = v
        elif flag == "--rollouts":
            rollouts = int(value)
        else:
            die(f"wait-collector: unknown option {flag}")
    deadline = time.monotonic() + float(seconds)
    problem = "no answer"
    base = url.rstrip("/")
    while time.monotonic() < deadline:
        try:
            problem = ""
            devices = devices_by_name(base)
            for d, v in active.items():
                models = ((devices.get(d) or {}).get("status") or {}).get("models", [])
                found = next((m["active"]["version"] for m in models
                              if m["name"] == model and m.get("active")), None)
                if found != v:
                    problem = f"{d}'s status says {model} {found} active, expected {v}"
            events = get_json(f"{base}/api/events?limit=100000")["events"]
            for d, v in failed.items():
                if not any(e["device"] == d and e["version"] == v and e["event"] == "failed"
                           for e in events):
                    problem = f"no failed event of {model} {v} from {d}"
            said = "its events"
            if rollouts:
                stored = get_json(f"{base}/api/rollouts").get("rollouts", [])
                final = [r for r in stored if r.get("state") in ("completed", "halted", "aborted")]
                if len(final) < rollouts:
                    problem = f"{len(final)} of {rollouts} rollouts stored in a final state"
                said = "the rollouts " + ", ".join(f"{r.get('id')} {r.get('state')}"
                                                   for r in final)
            if not problem:
                print(said)
                return
        except (OSError, ValueError, KeyError, TypeError) as e:
            problem = f"collector API: {e}"
        time.sleep(0.3)
    die(f"the collector did not catch up within {seconds} s: {problem}")


def summary(db, snapshot, rollout_list_json, model):
    # One consistent copy of the collector's database (SQLite's online backup) is what the whole
    # table is computed from, so it can be checked afterwards; received_ms names the cut-off.
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn = sqlite3.connect(snapshot)
    src.backup(conn)
    src.close()
    cutoff_ms = conn.execute("SELECT max(received_ms) FROM windows").fetchone()[0] or 0
    print(f"  fleet as the collector stored it ({os.path.basename(snapshot)}, a copy of "
          f"{os.path.basename(db)} taken now; telemetry received up to received_ms={cutoff_ms}):")
    header = (f"  {'device':<8} {'online':<6} {model + ' active':<16} {'requests':>8} "
              f"{'errors':>6} {'labeled':>7} {'correct':>7} {'accuracy':>8}  deployments")
    print(header)
    for name, online, status_json in conn.execute(
            "SELECT device, online, status_json FROM devices ORDER BY device").fetchall():
        models = (json.loads(status_json) if status_json else {}).get("models", [])
        act = next((m["active"] for m in models if m["name"] == model and m.get("active")), None)
        active = f"{act['version']} (slot {act['slot']})" if act else "none"
        requests, errors, labeled, correct = conn.execute(
            "SELECT coalesce(sum(count),0), coalesce(sum(errors),0), coalesce(sum(labeled),0),"
            " coalesce(sum(correct),0) FROM windows WHERE device=? AND model=?",
            (name, model)).fetchone()
        accuracy = f"{100.0 * correct / labeled:.1f}%" if labeled else "-"
        rows = conn.execute(
            "SELECT deployment, version, event FROM events WHERE device=? AND model=? AND"
            " event NOT IN ('parity_report') AND deployment>0 ORDER BY ts, received_ms",
            (name, model)).fetchall()
        final = {}
        for dep, version, event in rows:
            prev = final.get(dep)
            if prev is None or prev[1] not in TERMINAL:
                final[dep] = (version, event)
        deps = [f"{v} {e}" for _, (v, e) in sorted(final.items())]
        print(f"  {name:<8} {'yes' if online else 'no':<6} {active:<16} {requests:>8} "
              f"{errors:>6} {labeled:>7} {correct:>7} {accuracy:>8}  {', '.join(deps) or '-'}")
    conn.close()
    with open(rollout_list_json) as f:
        text = f.read().strip()
    try:
        parsed = json.loads(text)
        items = parsed if isinstance(parsed, list) else parsed.get("rollouts", [parsed])
    except ValueError:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    print("  rollouts (edgefleet rollout list, oldest first):")
    for r in sorted(items, key=lambda r: r.get("started_ms", 0)):
        print(f"    {r.get('id')}: {r.get('model')} {r.get('version')} to group {r.get('group')}"
              f" {r.get('state')}: {r.get('succeeded')} of {r.get('devices')} succeeded,"
              f" {r.get('failed')} failed ({r.get('reason')})")

def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    table = {"free-port": free_port, "port-free": port_free, "wait-tcp": wait_tcp,
             "patch-watch": patch_watch, "wait-online": wait_online, "agent": agent_check,
             "retained-desired": retained_desired, "waves": waves,
             "wait-collector": wait_collector, "summary": summary}
    if cmd not in table:
        die(f"unknown subcommand {cmd}\n{__doc__}")
    table[cmd](*args)


if __name__ == "__main__":
    main()
