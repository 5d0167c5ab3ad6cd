"""Runs scripts/demo.sh for the fleet tests (tests/demo/demo_test.py, tests/browser/browser_test.py).

The demo runs in its own session (process group), with its output in a file, its work directory
under a temporary directory, the binaries of the build under test and a free dashboard port.
Whatever happens, `stop()` leaves no process of the run behind (SIGKILL to the group as a last
resort) and reports the ones it had to kill, so the caller can fail on them.
Python 3 standard library only.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time


class DemoRun:
    def __init__(self, source_dir, build_dir, interactive):
        self.source_dir = os.path.abspath(source_dir)
        self.build_dir = os.path.abspath(build_dir)
        self.tmp = tempfile.mkdtemp(prefix="edgefleet-demo-test-")
        self.work = os.path.join(self.tmp, "work")
        self.output_path = os.path.join(self.tmp, "demo-output.txt")
        env = dict(os.environ)
        env.update(EDGEFLEET_DEMO_BUILD_DIR=self.build_dir, EDGEFLEET_DEMO_DIR=self.work,
                   EDGEFLEET_DEMO_HTTP_PORT="0")
        env.pop("EDGEFLEET_DEMO_EXIT", None)
        if not interactive:
            env["EDGEFLEET_DEMO_EXIT"] = "1"
        self.output = open(self.output_path, "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["bash", os.path.join(self.source_dir, "scripts/demo.sh")],
                                     stdout=self.output, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.elapsed = None

    def text(self):
        with open(self.output_path, errors="replace") as f:
            return f.read()

    def tail(self, lines=80):
        return "\n".join(self.text().splitlines()[-lines:])

    def wait(self, timeout):
        """The demo's exit status, or None when it did not exit within `timeout` seconds."""
        try:
            rc = self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        self.elapsed = time.monotonic() - self.started
        return rc

    def wait_for_line(self, pattern, timeout):
        """The first match of `pattern` in the output, or None when the demo exits or time is up."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.text())
            if match:
                return match
            if self.proc.poll() is not None:
                return regex.search(self.text())
            time.sleep(0.2)
        return None

    def finish(self, passed, what, artifacts_dir=None, name="demo"):
        """The test's exit status: on success removes the run's files, else prints the tail of
        the demo's output, keeps them (named) for a look and copies the output to
        ARTIFACTS_DIR/NAME-output.txt."""
        if not passed:
            print("\nThe demo's output ends with:\n")
            print(self.tail(80))
            kept = self.output_path
            if artifacts_dir:
                os.makedirs(artifacts_dir, exist_ok=True)
                kept = os.path.join(artifacts_dir, f"{name}-output.txt")
                shutil.copyfile(self.output_path, kept)
            print(f"\n(whole output: {kept}; work directory kept: {self.work})")
            return 1
        print(f"\nall checks passed; {what}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 0

    def recorded_pids(self):
        """{name: pid} from the demo's pid files (<work>/pids/NAME.pid)."""
        pids = {}
        pid_dir = os.path.join(self.work, "pids")
        if os.path.isdir(pid_dir):
            for name in os.listdir(pid_dir):
                try:
                    with open(os.path.join(pid_dir, name)) as f:
                        pids[name[:-4]] = int(f.read().strip())
                except (OSError, ValueError):
                    pass
        return pids

    def leftovers(self):
        """Processes of this run still alive: pid-file pids whose command line names the work
        directory or the build, and anything whose command line names the work directory."""
        left = {}
        for name, pid in self.recorded_pids().items():
            cmdline = _cmdline(pid)
            if cmdline is not None and (self.work in cmdline or self.build_dir in cmdline
                                        or "demo_traffic.py" in cmdline or "sleep" in cmdline):
                left[pid] = f"{name}: {cmdline}"
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                cmdline = _cmdline(int(entry))
                if cmdline and self.work in cmdline:
                    left[int(entry)] = cmdline
        return left

    def stop(self):
        """Ends the run whatever its state: SIGKILL to its process group and to leftovers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        killed = self.leftovers()
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.output.close()
        return killed


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None  # a zombie has ended; its parent just has not reaped it yet
    except (OSError, IndexError):
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()
