"""Driver side of :mod:`tests.nat._agent`: one agent process in a namespace, commands with a bounded wait."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.nat._netns import Topology

AGENT = Path(__file__).with_name("_agent.py")
REPO = Path(__file__).resolve().parents[2]

__all__ = ["Agent"]


class Agent:
    """``_agent.py`` in namespace ``where`` of ``topo``; ``call(cmd, **kw)`` returns its reply."""

    def __init__(self, topo: Topology, where: str, *args: str, timeout: float = 60.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        cmd = [*topo.exec_prefix(where), sys.executable, str(AGENT), *args]
        self.where = where
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        self._next = 0
        ready = self._read(timeout)
        self.peer_id: str = ready["peer_id"]
        self.addrs: list[str] = ready["addrs"]
        self.blob: str = ready["blob"]

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)
            del self._err[:-200]

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"agent in {self.where} silent for {timeout} s: {''.join(self._err)[-3000:]}") from None
        if line is None:
            raise RuntimeError(f"agent in {self.where} exited: {''.join(self._err)[-3000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, cmd: str, timeout: float = 60.0, **kw: Any) -> dict[str, Any]:
        self._next += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": self._next, "cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next:
                return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("stop", timeout=20.0)
                self.proc.wait(20)
            except (TimeoutError, RuntimeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(20)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
