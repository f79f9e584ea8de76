"""Helpers for tests that run real ``edgenode`` processes on loopback."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

EDGENODE = [sys.executable, "-m", "edgenode"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    return e


class Lines:
    """Lines of a process's stdout, read by a thread, taken with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.all: list[str] = []
        assert proc.stdout is not None
        out = proc.stdout

        def pump() -> None:
            for line in out:
                self.q.put(line.rstrip("\n"))
            self.q.put(None)

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()
        self.stream = out

    def close(self, timeout: float = 10.0) -> None:
        """After the process ended: wait for the reader, close the pipe."""
        self.thread.join(timeout)
        self.stream.close()

    def next(self, timeout: float) -> str | None:
        """The next line, or None at end of stream; raises TimeoutError after ``timeout`` s."""
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty as exc:
            raise TimeoutError("no output line in time") from exc
        if line is not None:
            self.all.append(line)
        return line

    def rest(self, timeout: float) -> list[str]:
        """Every remaining line until end of stream (bounded by ``timeout`` in total)."""
        end = time.monotonic() + timeout
        while True:
            line = self.next(max(0.01, end - time.monotonic()))
            if line is None:
                return self.all


class NodeProc:
    """``edgenode run`` in a fresh home on 127.0.0.1."""

    def __init__(self, home: Path, bootstrap: list[str] | None = None, slots: int | None = 2,
                 configure: Callable[[str], str] | None = None, extra: list[str] | None = None) -> None:
        """``slots=None`` leaves the config's; ``configure`` rewrites config.toml's text before the start;
        ``extra``: more ``edgenode run`` arguments."""
        self.home = home
        subprocess.run([*EDGENODE, "init", "--home", str(home)], check=True, capture_output=True, env=env())
        if configure is not None:
            cfg = home / "config.toml"
            cfg.write_text(configure(cfg.read_text()))
        cmd = [*EDGENODE, "run", "--home", str(home), "--listen", "/ip4/127.0.0.1/tcp/0", "--quiet"]
        if slots is not None:
            cmd += ["--slots", str(slots)]
        if bootstrap:
            cmd += ["--bootstrap", *bootstrap]
        cmd += extra or []
        self.stderr = open(home / "stderr.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env())
        self.lines = Lines(self.proc)
        self.peer_id = ""
        self.addrs: list[str] = []
        deadline = time.monotonic() + 60
        while not self.addrs:
            line = self.lines.next(max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"node exited: {(home / 'stderr.log').read_text()[-2000:]}")
            if line.startswith("peer id "):
                self.peer_id = line.split()[-1]
            elif line.startswith("listening "):
                self.addrs.append(line.split()[-1])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self._close()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (if still running) and the exit code; idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._close()
        return rc

    def _close(self) -> None:
        if not self.stderr.closed:
            self.lines.close()
            self.stderr.close()


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGENODE, *args], capture_output=True, text=True, timeout=timeout, env=env())
