#!/usr/bin/python3
"""Benchmark (issue 15, acceptance 1): one mosquitto and one `edgefleet collect` on this box
against `edgefleet simulate` devices, each sending a telemetry window per second and an event a
minute at QoS 1, for each fleet size given.

    bench/fleet_scale.py [--devices 1000,2000,5000,10000] [--duration 300] [--cli PATH]
                         [--postgres N] [--batch-wait-ms MS] [--sim-nice N]
                         [--sim-read-every-s S]

With --postgres N: N collectors in one shared-subscription group (--share) write a PostgreSQL 15
server the bench starts in its temp dir; CPU and RSS are the collectors' summed. With
--sim-nice N the simulator processes run at nice N, so that the broker and collector, which
real devices would not share a box with, are scheduled first; the simulators' lateness (below)
says whether they still sent the load. The simulators read their sockets every 5 s
(--sim-read-every-s, 0: as data arrives): the load tool's cost is taken from the box it
measures, and a read per PUBACK was about 7 % of a core at 10,000 devices (bench/RESULTS.md,
run 12).

Per size, after every device has connected (the ramp is not measured):
  - the collector's CPU (% of one core, mean and max of 1 s samples) and peak RSS;
  - store lag: the collector's own `lag_ms` (how long the oldest received message has waited
    unstored), sampled every second: p99 and max, and when it was 5 s or more;
  - delivery: received_ms - ts of every stored window (device clock to collector), p50/p99;
  - /api/summary and /api/devices?limit=100 (the first page) wall time, sampled every 5 s, and
    /api/series (the dashboard's charts) and /metrics beside them;
  - exactly once: the collector's numbered messages against the simulator's numbered total, its
    missing count, the windows and events tables against what the broker acknowledged, every
    device offline after the simulator's clean stop, and no simulated connection lost;
  - the window periods the simulators fell behind on (their loop was late, so a window covered
    more than one period): more than 1 % of the windows means the load was not generated.
Limits (acceptance 1): store lag p99 < 5 s, both API medians < 200 ms, nothing missing, stored ==
acknowledged. Prints one table row per size and the load average; exits 1 on a breach.
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet_tools  # noqa: E402
from fleet_tools import cpu_ticks, rss_mb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get(port, path):
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        body = r.read()
    return time.monotonic() - start, json.loads(body)


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_size(cli, devices, duration, work, postgres, batch_wait_ms, sim_nice, sim_read_every_s):
    with fleet_tools.Processes() as procs:
        broker_port = fleet_tools.start_broker(procs, work)
        db = fleet_tools.start_postgres(procs, work) if postgres else os.path.join(work, "c.db")
        collectors, ports = [], []
        for i in range(max(1, postgres)):
            port_file = os.path.join(work, f"port{i}")
            extra = (["--share", "bench", "--spool", os.path.join(work, f"c{i}.spool")]
                     if postgres else [])
            if batch_wait_ms is not None:
                extra += ["--batch-wait-ms", str(batch_wait_ms)]
            collectors.append(procs.start(
                [cli, "collect", "--broker", f"127.0.0.1:{broker_port}", "--fleet", "bench",
                 "--db", db, "--http", "127.0.0.1:0", "--port-file", port_file,
                 "--client-id", f"collector{i}"] + extra,
                os.path.join(work, f"collector{i}.log")))
            ports.append(fleet_tools.wait_port_file(port_file))
        http_port = ports[-1]
        ramp = devices / 1000.0 + 5
        sims = fleet_tools.start_simulators(
            procs, cli, work, f"127.0.0.1:{broker_port}", "bench", devices, "sim-",
            ["--duration", f"{int(duration + ramp)}s", "--window-s", "1", "--event-every-s",
             "60", "--read-every-s", str(sim_read_every_s)], nice=sim_nice)
        time.sleep(ramp)
        hz = os.sysconf("SC_CLK_TCK")
        cpu, lag, summary_s, page_s, series_s, metrics_s, rss = [], [], [], [], [], [], 0.0
        def ticks():
            return sum(cpu_ticks(c.pid) for c in collectors)

        last_ticks, last_t = ticks(), time.monotonic()
        tick = 0
        while any(sim.poll() is None for sim, _ in sims):
            time.sleep(1)
            tick += 1
            now_ticks, now_t = ticks(), time.monotonic()
            cpu.append(100.0 * (now_ticks - last_ticks) / hz / (now_t - last_t))
            last_ticks, last_t = now_ticks, now_t
            rss = max(rss, sum(rss_mb(c.pid) for c in collectors))
            try:
                others = [get(p, "/api/summary")[1]["collector"]["lag_ms"] for p in ports[:-1]]
                took, s = get(http_port, "/api/summary")
                lag.append(max(others + [s["collector"]["lag_ms"]]) / 1000.0)
                if tick % 5 == 0:
                    summary_s.append(took)
                    took, _ = get(http_port, "/api/devices?limit=100")
                    page_s.append(took)
                    took, _ = get(http_port, "/api/series")
                    series_s.append(took)
                    start = time.monotonic()
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics",
                                           timeout=30).read()
                    metrics_s.append(time.monotonic() - start)
            except Exception as e:  # a slow answer is a data point, not the end of the run
                print(f"  sample failed: {e}", file=sys.stderr)
        report = fleet_tools.merged_report(sims)
        numbered = report["numbered"]
        drain_start = time.monotonic()
        summary = {}
        while time.monotonic() - drain_start < 120:
            _, summary = get(http_port, "/api/summary")
            if (summary["messages"]["numbered"] >= numbered and summary["collector"]["queued"] == 0
                    and summary["devices"]["offline"] >= devices):
                break
            time.sleep(1)
        drain = time.monotonic() - drain_start
        if postgres:
            def query(sql):
                out = subprocess.run(["psql", "-qtA", db, "-c", sql], check=True,
                                     capture_output=True, text=True).stdout
                return [line for line in out.splitlines() if line]
            windows = int(query("SELECT count(*) FROM windows")[0])
            events = int(query("SELECT count(*) FROM events")[0])
            delivery = [int(v) / 1000.0 for v in query("SELECT received_ms - ts FROM windows")]
        else:
            con = sqlite3.connect(db)
            windows = con.execute("SELECT count(*) FROM windows").fetchone()[0]
            events = con.execute("SELECT count(*) FROM events").fetchone()[0]
            delivery = [r[0] / 1000.0 for r in con.execute("SELECT received_ms - ts FROM windows")]
            con.close()
        return {
            "devices": devices,
            "numbered_sent": numbered,
            "numbered_stored": summary["messages"]["numbered"],
            "missing": summary["messages"]["missing"],
            "windows_acked": report["windows"]["acked"],
            "windows_stored": windows,
            "events_acked": report["events"]["acked"],
            "events_stored": events,
            "lost_connections": report["connections"]["lost"],
            "windows_late": report["made"]["windows_late"],
            "cpu_mean": statistics.mean(cpu) if cpu else float("nan"),
            "cpu_max": max(cpu) if cpu else float("nan"),
            "rss_mb": rss,
            "lag_p99": pct(lag, 0.99),
            "lag_max": max(lag) if lag else float("nan"),
            "lag_over_5s_at": [i + 1 for i, v in enumerate(lag) if v >= 5],
            "delivery_p50": pct(delivery, 0.5),
            "delivery_p99": pct(delivery, 0.99),
            "summary_med": statistics.median(summary_s) if summary_s else float("nan"),
            "summary_max": max(summary_s) if summary_s else float("nan"),
            "page_med": statistics.median(page_s) if page_s else float("nan"),
            "page_max": max(page_s) if page_s else float("nan"),
            "drain_s": drain,
            "offline": summary["devices"]["offline"],
            "series_med": statistics.median(series_s) if series_s else float("nan"),
            "metrics_med": statistics.median(metrics_s) if metrics_s else float("nan"),
            "broker_dropped": summary["collector"]["broker_dropped"],
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", default="1000,2000,5000,10000")
    ap.add_argument("--duration", type=int, default=300, help="measured seconds per size")
    ap.add_argument("--cli", default=os.path.join(ROOT, "build/release/deploy/edgefleet"))
    ap.add_argument("--batch-wait-ms", type=int, default=None, metavar="MS",
                    help="the collectors' --batch-wait-ms (default: theirs, 1000)")
    ap.add_argument("--postgres", type=int, default=0, metavar="N",
                    help="N collectors in one shared-subscription group writing a PostgreSQL "
                         "server started here (CPU and RSS are theirs summed, not PostgreSQL's)")
    ap.add_argument("--sim-nice", type=int, default=0, metavar="N",
                    help="run the simulators at nice N (0..19): on one box, the broker and "
                         "collector are scheduled first, as real devices would not compete")
    ap.add_argument("--sim-read-every-s", type=float, default=5, metavar="S",
                    help="the simulators' --read-every-s: read each device's socket every S "
                         "seconds (0..10, default 5; 0: as data arrives), so a PUBACK costs the "
                         "load tool no read of its own; the broker and collector work the same")
    args = ap.parse_args()
    if not 0 <= args.sim_nice <= 19:
        ap.error(f"--sim-nice: expected 0..19, found {args.sim_nice}")
    if not 0 <= args.sim_read_every_s <= 10:
        ap.error(f"--sim-read-every-s: expected 0..10, found {args.sim_read_every_s:g}")
    print(f"load average before: {fleet_tools.loadavg()}" +
          (f"; simulators at nice {args.sim_nice}" if args.sim_nice else "") +
          (f"; simulators read every {args.sim_read_every_s:g} s" if args.sim_read_every_s
           else ""))
    print("| devices | numbered stored / sent | missing | windows stored / acked | "
          "events stored / acked | collector CPU mean / max | RSS | store lag p99 / max | "
          "delivery p50 / p99 | /api/summary median / max | /api/devices page median / max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for n in [int(x) for x in args.devices.split(",")]:
        with tempfile.TemporaryDirectory(prefix="edgefleet-fleet-") as work:
            r = run_size(args.cli, n, args.duration, work, args.postgres, args.batch_wait_ms,
                         args.sim_nice, args.sim_read_every_s)
        print(f"| {n:,} | {r['numbered_stored']:,} / {r['numbered_sent']:,} | {r['missing']} | "
              f"{r['windows_stored']:,} / {r['windows_acked']:,} | "
              f"{r['events_stored']:,} / {r['events_acked']:,} | "
              f"{r['cpu_mean']:.0f} % / {r['cpu_max']:.0f} % | {r['rss_mb']:.0f} MB | "
              f"{r['lag_p99']:.2f} / {r['lag_max']:.2f} s | "
              f"{r['delivery_p50']:.2f} / {r['delivery_p99']:.2f} s | "
              f"{r['summary_med'] * 1000:.0f} / {r['summary_max'] * 1000:.0f} ms | "
              f"{r['page_med'] * 1000:.0f} / {r['page_max'] * 1000:.0f} ms |", flush=True)
        print(f"  (/api/series median {r['series_med'] * 1000:.0f} ms, /metrics median "
              f"{r['metrics_med'] * 1000:.0f} ms; devices offline after the stop {r['offline']:,})")
        print(f"  (drain after the simulator stopped {r['drain_s']:.1f} s, connections lost "
              f"{r['lost_connections']}, window periods the simulators fell behind on "
              f"{r['windows_late']:,}, broker dropped {r['broker_dropped']}, load "
              f"{fleet_tools.loadavg()})", flush=True)
        late = r["lag_over_5s_at"]
        print(f"  (store lag samples >= 5 s: {len(late)} of the once-a-second samples"
              + (f", at seconds {', '.join(map(str, late[:20]))}"
                 + (" ..." if len(late) > 20 else "") + " after the ramp" if late else "")
              + ")", flush=True)
        breach = []
        if r["lost_connections"] != 0:
            breach.append("simulated connections lost")
        if r["windows_late"] > r["windows_acked"] // 100:
            breach.append("the simulators fell behind (over 1 % of window periods late): the "
                          "load asked for was not generated")
        if r["offline"] != n:
            breach.append("not every device offline after its clean stop")
        if r["missing"] != 0 or r["numbered_stored"] != r["numbered_sent"]:
            breach.append("numbered messages missing")
        if r["windows_stored"] != r["windows_acked"] or r["events_stored"] != r["events_acked"]:
            breach.append("stored != acknowledged")
        if not r["lag_p99"] < 5:
            breach.append("store lag p99 >= 5 s")
        if not (r["summary_med"] < 0.2 and r["page_med"] < 0.2):
            breach.append("API median >= 200 ms")
        if breach:
            ok = False
            print(f"  BREACH at {n}: {', '.join(breach)}", flush=True)
    print(f"load average after: {fleet_tools.loadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
