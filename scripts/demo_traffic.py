#!/usr/bin/env python3
"""The demo's traffic: held-out digit PNGs to every agent's local inference API, with feedback.

For each agent (NAME=PORT_FILE, the agent's <state_dir>/api.port) one thread sends
`POST /v2/models/<model>/infer` with the raw PNG bytes (Content-Type image/png: the agent
preprocesses as the manifest says) at about --rate requests per second, then
`POST /v2/models/<model>/feedback` with {"id": <the answer's id>, "label": <true class>}; the true
class is the digit after the underscore in the file name (heldout_png/NNN_L.png). Requests that
fail (no model yet, agent restarting) are counted and retried on the next tick, so latency and
accuracy charts get data and the agents' watch windows can close.

Every --report seconds one line per agent:
  traffic device=box-1 sent=120 ok=118 failed=2 feedback=118 correct=116
Runs until SIGTERM or SIGINT. Python 3 standard library only.
"""
import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time

stop = threading.Event()


def load_images(directory):
    images = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".png") or "_" not in name:
            continue
        label = int(name.rsplit("_", 1)[1].split(".", 1)[0])
        with open(os.path.join(directory, name), "rb") as f:
            images.append((name, f.read(), label))
    if not images:
        raise SystemExit(f"demo_traffic: no NNN_L.png images in {directory}")
    return images


class Agent:
    def __init__(self, name, port_file):
        self.name = name
        self.port_file = port_file
        self.port = None
        self.conn = None
        self.sent = self.ok = self.failed = self.feedback = self.correct = 0
        self.lock = threading.Lock()

    def connection(self):
        if self.port is None:
            try:
                with open(self.port_file) as f:
                    self.port = int(f.read().strip())
            except (OSError, ValueError):
                return None
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        return self.conn

    def post(self, path, body, content_type):
        conn = self.connection()
        if conn is None:
            raise OSError(f"{self.port_file} not written yet")
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": content_type})
            res = conn.getresponse()
            return res.status, res.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


def run_agent(agent, images, model, rate, offset):
    period = 1.0 / rate
    i = offset
    next_at = time.monotonic()
    while not stop.is_set():
        name, png, label = images[i % len(images)]
        i += 1
        try:
            status, body = agent.post(f"/v2/models/{model}/infer", png, "image/png")
            ok = status == 200
            answer = json.loads(body) if ok else None
        except (OSError, http.client.HTTPException, ValueError):
            ok, answer = False, None
        with agent.lock:
            agent.sent += 1
            agent.ok += ok
            agent.failed += not ok
        if answer is not None:
            try:
                fb = json.dumps({"id": answer["id"], "label": label})
                status, _ = agent.post(f"/v2/models/{model}/feedback", fb, "application/json")
                if status == 200:
                    with agent.lock:
                        agent.feedback += 1
                        agent.correct += answer.get("parameters", {}).get("top1_class") == label
            except (OSError, http.client.HTTPException, KeyError, TypeError):
                pass
        next_at += period
        delay = next_at - time.monotonic()
        if delay < -1.0:  # fell behind (agent busy): do not burst to catch up
            next_at = time.monotonic()
        stop.wait(max(0.0, delay))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", required=True, help="directory of NNN_L.png files")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second per agent")
    parser.add_argument("--report", type=float, default=10.0, help="seconds between report lines")
    parser.add_argument("agents", nargs="+", metavar="NAME=PORT_FILE")
    args = parser.parse_args()

    images = load_images(args.images)
    agents = []
    for spec in args.agents:
        name, sep, port_file = spec.partition("=")
        if not sep or not name or not port_file:
            parser.error(f"expected NAME=PORT_FILE, got {spec!r}")
        agents.append(Agent(name, port_file))

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = [threading.Thread(target=run_agent, daemon=True,
                                args=(a, images, args.model, args.rate, k * 97))
               for k, a in enumerate(agents)]
    for t in threads:
        t.start()
    print(f"traffic started agents={len(agents)} rate={args.rate}/s images={len(images)}",
          flush=True)

    def report():
        for a in agents:
            with a.lock:
                print(f"traffic device={a.name} sent={a.sent} ok={a.ok} failed={a.failed} "
                      f"feedback={a.feedback} correct={a.correct}", flush=True)

    while not stop.wait(args.report):
        report()
    for t in threads:
        t.join(timeout=6)
    report()
    print("traffic stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
