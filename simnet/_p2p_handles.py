"""Where the libp2p backend's node groups run: the driver's side of a group, whatever hosts it.

A :class:`GroupHandle` is one :class:`~simnet._p2p_group.NodeGroup` somewhere: a worker
process on this machine (:class:`ProcessGroup`, here) or a Ray actor on some Ray node
(:mod:`simnet._ray`).  :class:`~simnet._p2p.P2PSwarm` only speaks to handles (one command at
a time per group, an answer each; probe deliveries reported as they come), and a
:class:`GroupLauncher` decides how many groups there are and where each one runs.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import math
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from ._errors import SimnetError

__all__ = [
    "deal_groups", "GroupHandle", "GroupLauncher", "ProcessGroup", "ProcessLauncher", "NODES_PER_GROUP_MAX", "LOOPBACK",
]

NODES_PER_GROUP_MAX = 64
"""More nodes than this per group (one process) and the group's trio threads starve each other."""
LOOPBACK = "127.0.0.1"

ProbeSink = Callable[[str, str], None]
"""``on_probe(msg_id, peer_id)``: a node received a gossip probe."""


def deal_groups(cpus: list[int], groups: int) -> list[int]:
    """The machine (index into ``cpus``) of each of ``groups`` groups: dealt round-robin over the
    machines, each taking as many turns per round as it has CPUs (at least one)."""
    turns = [max(1, c) for c in cpus]
    order = [m for r in range(max(turns, default=0)) for m, c in enumerate(turns) if r < c]
    if not order:
        raise SimnetError("no machine to place node groups on")
    return [order[g % len(order)] for g in range(groups)]


class GroupHandle(abc.ABC):
    """The driver's end of one node group: send it commands, one at a time, and get the answers."""

    def __init__(self, group: int, listen_ip: str) -> None:
        self.group = group
        self.listen_ip = listen_ip
        """The address the group's hosts listen on (its machine's, as the other machines reach it)."""
        self.placement: dict[str, Any] = {"group": group}
        """Where the group runs (host, pid, Ray node...), for the report."""
        self.progress: dict[str, Any] = {}
        """The group's last answer to ``progress``."""
        self._lock = asyncio.Lock()

    async def call(self, cmd: dict[str, Any], timeout: float = 120.0) -> Any:
        """Run one group command (see :mod:`simnet._p2p_group`); SimnetError if it fails or takes too long."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._call(cmd), timeout)
            except TimeoutError as exc:
                raise SimnetError(f"node group {self.group} did not answer {cmd['op']} within {timeout:.0f} s") from exc

    @abc.abstractmethod
    async def _call(self, cmd: dict[str, Any]) -> Any:
        """Send one command and wait for its answer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the group's process or actor (after ``stop``, or in its place when it does not answer)."""


class GroupLauncher(abc.ABC):
    """Starts the node groups: how many, where, and the driver's own address."""

    kind: str
    """``process`` or ``ray`` (the report's placement rows say which)."""
    driver_ip: str = LOOPBACK
    """Where the driver's hosts (the submitters) listen."""

    def groups_for(self, nodes: int) -> int:
        """How many groups ``nodes`` executors are split into: one per core, at most 64 nodes each."""
        return min(nodes, max(self.slots(), math.ceil(nodes / NODES_PER_GROUP_MAX)))

    @abc.abstractmethod
    def slots(self) -> int:
        """Cores the groups may use in all (one group per core)."""

    @abc.abstractmethod
    async def launch(self, groups: int, on_probe: ProbeSink) -> list[GroupHandle]:
        """Start ``groups`` empty groups (placed by resources); they take ``start`` next."""

    @abc.abstractmethod
    def where(self, groups: int) -> str:
        """Where ``groups`` groups run, in words (for the report's notes)."""

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what :meth:`launch` took (a Ray connection...)."""


class ProcessGroup(GroupHandle):
    """A group in a worker process of this machine (``python -m simnet._p2p_worker``), over its pipes."""

    def __init__(self, group: int, proc: asyncio.subprocess.Process, on_probe: ProbeSink) -> None:
        super().__init__(group, LOOPBACK)
        self.proc = proc
        host = socket.gethostname()
        self.placement.update(backend="process", host=host, pid=proc.pid, where=f"{host} pid {proc.pid}")
        self._on_probe = on_probe
        self._replies: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            word, _, rest = raw.decode("utf-8", "replace").rstrip("\n").partition(" ")
            if word == "PROBE":
                msg_id, _, peer = rest.partition(" ")
                self._on_probe(msg_id, peer)
            elif word in ("REPLY", "FAILED"):
                self._replies.put_nowait((word == "REPLY", rest))
        self._replies.put_nowait((False, "the worker process exited"))

    async def _call(self, cmd: dict[str, Any]) -> Any:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps(cmd) + "\n").encode())
            await stdin.drain()
        except (OSError, ConnectionError) as exc:
            raise SimnetError(f"libp2p worker {self.group} is gone: {exc}") from exc
        ok, text = await self._replies.get()
        if not ok:
            raise SimnetError(f"libp2p worker {self.group}: {cmd['op']} failed: {text}")
        return json.loads(text)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), 30.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class ProcessLauncher(GroupLauncher):
    """One worker process per core on this machine (the embedded default: no Ray needed)."""

    kind = "process"

    def slots(self) -> int:
        return os.cpu_count() or 1

    def where(self, groups: int) -> str:
        return f"{groups} worker processes, real hosts on {LOOPBACK}"

    async def launch(self, groups: int, on_probe: ProbeSink) -> list[GroupHandle]:
        out: list[GroupHandle] = []
        for g in range(groups):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "simnet._p2p_worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
            )  # fmt: skip
            out.append(ProcessGroup(g, proc, on_probe))
        return out
