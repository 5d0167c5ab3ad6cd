"""Shared by bench/fleet_scale.py and bench/rollout_scale.py: free ports, a mosquitto broker for
thousands of connections, processes that are always stopped, /proc samples."""
import json
import os
import resource
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Processes:
    """Started processes, stopped (TERM, then KILL after 30 s) in reverse order on exit."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, **kwargs):
        p = subprocess.Popen(argv, stdout=kwargs.pop("stdout", subprocess.DEVNULL),
                             stderr=open(log, "w"), **kwargs)
        self.procs.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


SHIPPED_CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy",
                            "mosquitto", "mosquitto.conf")


def start_broker(procs, work):
    """mosquitto on a free loopback port with the shipped config's queue bounds
    (deploy/mosquitto/mosquitto.conf), no connection limit, no persistence, no TLS; its port."""
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(SHIPPED_CONF) as f:
        bounds = [line for line in f if line.split()[:1] in (["max_queued_messages"],
                                                             ["max_inflight_messages"])]
    if len(bounds) != 2:
        raise RuntimeError(f"{SHIPPED_CONF}: expected the two queue bounds, found {bounds}")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                "max_connections -1\npersistence false\n" + "".join(bounds))
    procs.start(["mosquitto", "-c", conf], os.path.join(work, "broker.log"),
                preexec_fn=raise_nofile)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}")


PG_BIN = "/usr/lib/postgresql/15/bin"


def start_postgres(procs, work):
    """PostgreSQL 15 in <work>/pg (trust auth, unix socket only, as the postgres user when run
    as root); returns a libpq URL of its database `fleet`."""
    data, sock = os.path.join(work, "pg", "data"), os.path.join(work, "pg", "sock")
    os.makedirs(data)
    os.makedirs(sock)
    as_user = []
    if os.geteuid() == 0:
        os.chmod(work, 0o711)  # the postgres user enters, does not list
        for d in (os.path.join(work, "pg"), data, sock):
            subprocess.run(["chown", "postgres:postgres", d], check=True)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_user + [f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "edgefleet",
                              "-E", "UTF8", "--locale", "C", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL, cwd="/")
    procs.start(as_user + [f"{PG_BIN}/postgres", "-D", data, "-k", sock, "-c",
                           "listen_addresses=", "-c", "max_connections=50"],
                os.path.join(work, "postgres.log"), cwd="/")
    for _ in range(300):
        if subprocess.run([f"{PG_BIN}/pg_isready", "-h", sock, "-U", "edgefleet"],
                          stdout=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.1)
    subprocess.run(["psql", "-q", f"postgresql:///postgres?host={sock}&user=edgefleet", "-c",
                    "CREATE DATABASE fleet"], check=True)
    return f"postgresql:///fleet?host={sock}&user=edgefleet"


def wait_port_file(path, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            text = open(path).read().strip()
            if text:
                return int(text)
        time.sleep(0.1)
    raise RuntimeError(f"no port in {path} after {timeout} s")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# One simulator process per 5,000 devices: each stays well inside a 20,000 open-file hard limit
# (one descriptor per connection), and the two of a 10,000-device run share the cores evenly.
DEVICES_PER_SIMULATOR = 5000


def start_simulators(procs, cli, work, broker, fleet, devices, prefix, extra, nice=0):
    """`edgefleet simulate` processes for `devices` devices (named <prefix><k>-00001, ...), at
    most DEVICES_PER_SIMULATOR each, connecting at 1,000 per second in all, at `nice` (real
    devices are other machines: a positive value lets the broker and collector be scheduled
    first on one box; their reports say whether they kept their schedule); [(process,
    report path)]."""
    shards = max(1, -(-devices // DEVICES_PER_SIMULATOR))
    out = []
    for k in range(shards):
        n = devices // shards + (1 if k < devices % shards else 0)
        report = os.path.join(work, f"{prefix}{k}-report.json")
        p = procs.start([cli, "simulate", "--broker", broker, "--fleet", fleet, "--devices",
                         str(n), "--prefix", f"{prefix}{k}-", "--connect-rate",
                         str(max(1, 1000 // shards)), "--report", report, *extra],
                        os.path.join(work, f"{prefix}{k}-sim.log"),
                        preexec_fn=(lambda: os.nice(nice)) if nice else None)
        out.append((p, report))
    return out


def merged_report(sims):
    """The simulators' reports (after they exited) with every count summed."""
    def add(into, doc):
        for key, value in doc.items():
            if isinstance(value, dict):
                add(into.setdefault(key, {}), value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                into[key] = into.get(key, 0) + value
    total = {}
    for p, path in sims:
        p.wait()
        if not os.path.exists(path):
            log = path.replace("-report.json", "-sim.log")
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"a simulator wrote no report ({path}):\n{tail}")
        add(total, json.load(open(path)))
    return total
