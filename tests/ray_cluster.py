"""A Ray cluster of separate processes on this machine, for tests and benchmarks.

A head node and worker nodes, each started by ``ray start --block`` (which stops the
processes it started when it gets SIGTERM), all on 127.0.0.1 with small object stores.
:meth:`LocalRayCluster.stop` ends exactly the processes this cluster started, by id, never
by name. Token authentication is off (``RAY_AUTH_MODE=disabled``) so that nothing is
written under ``~/.ray``; drivers get the same variables through :attr:`env`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ray_command() -> list[str]:
    script = Path(sys.executable).with_name("ray")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


class LocalRayCluster:
    """``with LocalRayCluster(head_cpus=2, worker_cpus=[1]) as cluster: cluster.address``."""

    def __init__(self, head_cpus: int = 2, worker_cpus: tuple[int, ...] = (1,),
                 object_store_bytes: int = 100_000_000, start_timeout: float = 120.0) -> None:
        self.head_cpus = head_cpus
        self.worker_cpus = worker_cpus
        self.object_store_bytes = object_store_bytes
        self.start_timeout = start_timeout
        # Ray's socket paths must stay short: a folder right under /tmp.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rare-ray-", dir="/tmp"))
        self.port = free_port()
        self.env = {**os.environ, **RAY_ENV}
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _start(self, args: list[str], log_name: str) -> None:
        log = open(self.temp_dir / log_name, "wb")  # noqa: SIM115 - closed with the process
        try:
            proc = subprocess.Popen([*_ray_command(), "start", "--block", *args],
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.procs.append(proc)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
                         for p in sorted(self.temp_dir.glob("*.log")))

    def start(self) -> LocalRayCluster:
        common = [f"--node-ip-address={HOST}", f"--object-store-memory={self.object_store_bytes}",
                  "--disable-usage-stats"]
        self._start(["--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
                     "--include-dashboard=false", f"--temp-dir={self.temp_dir}", *common],
                    "head.log")
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if self.procs[0].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the Ray head did not start:\n{self.log_tail()}") from None
                time.sleep(0.2)
        for n, cpus in enumerate(self.worker_cpus):
            self._start([f"--address={self.address}", f"--num-cpus={cpus}", *common],
                        f"worker{n}.log")
        self._wait_for_nodes(1 + len(self.worker_cpus), deadline)
        return self

    def _wait_for_nodes(self, count: int, deadline: float) -> None:
        probe = ("import sys, time, ray\n"
                 "ray.init(address=sys.argv[1], logging_level='ERROR')\n"
                 "while len([n for n in ray.nodes() if n['Alive']]) < int(sys.argv[2]):\n"
                 "    time.sleep(0.2)\n")
        try:
            subprocess.run([sys.executable, "-c", probe, self.address, str(count)],
                           env=self.env, check=True, capture_output=True,
                           timeout=max(5.0, deadline - time.monotonic()))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self.stop()
            raise RuntimeError(f"the Ray cluster did not come up ({exc}):\n"
                               f"{self.log_tail()}") from None

    def descendants(self) -> list[int]:
        """Every process this cluster started (its nodes' processes and their workers)."""
        tree = _children()
        found: list[int] = []
        todo = [p.pid for p in self.procs]
        while todo:
            pid = todo.pop()
            for child in tree.get(pid, []):
                found.append(child)
                todo.append(child)
        return found

    def worker_pids(self, marker: str = "MapWorker") -> list[int]:
        """The worker processes (actors) of this cluster whose title contains ``marker``."""
        return [pid for pid in self.descendants() if cmdline(pid).startswith("ray::")
                and marker in cmdline(pid)]

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM each ``ray start --block`` (it stops what it started); after ``grace``
        seconds (a head with a detached actor, such as Ray Data's stats actor, waits half a
        minute) SIGKILL whatever of this cluster is left, by id."""
        started = {pid: cmdline(pid) for pid in [p.pid for p in self.procs] + self.descendants()}
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
        for pid, command in started.items():
            if not command or cmdline(pid) != command:  # gone (or its id reused): not ours
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs:
            proc.wait(timeout=30)
        self.procs = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
