"""One edgenode libp2p peer as an OS process, driven by JSON lines on stdin.

Started by ``test_p2p_processes.py`` and ``benchmarks/bench_net_p2p.py``::

    python tests/integration/_p2p_peer.py --seed HEX [--topic T] [--blob-bytes N] [--hosts K]

Prints ``{"event": "ready", "peers": [{"peer_id", "addrs", "blob"}...]}`` once its
``--hosts`` transports (default 1) listen on 127.0.0.1.  Commands (one JSON
object per line, each with an ``id`` echoed in its reply; ``host`` selects one
of this process's transports, default 0):

* ``{"cmd": "connect", "addr": A}``
* ``{"cmd": "publish", "data": HEX}``
* ``{"cmd": "request", "peer": P, "data": HEX}`` -> ``{"data": HEX}`` (echo protocol)
* ``{"cmd": "fetch", "peer": P, "digest": D}`` -> ``{"sha256": ..., "bytes": n, "ms": t}``
* ``{"cmd": "stop"}`` stops every transport and exits 0.

Asynchronous events: ``{"event": "gossip", "host", "sender", "data", "t"}`` (``t`` is
``time.time()`` at delivery), ``{"event": "join"|"leave", "host", "peer"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore, Transport, sha256_hex
from edgenode.net.p2p import P2PTransport

ECHO = "/itest/echo/1"
SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[2]


class PeerProcess:
    """Driver side: one peer process, its command replies and its event stream."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.info: list[dict[str, Any]] = []
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    @classmethod
    async def spawn(cls, seed: bytes, *extra: str, ready_timeout: float = 120.0) -> PeerProcess:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--seed",
            seed.hex(),
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(REPO),
            env=env,
            limit=1 << 24,
        )
        peer = cls(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(ready_timeout):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise RuntimeError(f"peer process died before ready: {err.decode(errors='replace')[-2000:]}")
                msg = json.loads(line)
                if msg.get("event") == "ready":
                    peer.info = msg["peers"]
                    break
        peer._reader = asyncio.create_task(peer._read())
        return peer

    @property
    def peer_id(self) -> str:
        return str(self.info[0]["peer_id"])

    @property
    def addr(self) -> str:
        return str(self.info[0]["addrs"][0])

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            fut = self._replies.pop(msg["id"], None) if "id" in msg else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif self.on_event is not None:
                self.on_event(msg)
            else:
                self.events.put_nowait(msg)
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionError("peer process exited"))

    async def call(self, cmd: str, timeout: float = 60.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next] = fut
        self.proc.stdin.write((json.dumps({"id": self._next, "cmd": cmd, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            return await fut

    async def stop(self, timeout: float = 30.0) -> tuple[int, str]:
        """Ask the process to stop; return (exit code, stderr).  Kills it if it does not exit in time."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.write(b'{"cmd": "stop"}\n')
            with contextlib.suppress(ConnectionError):  # already exiting
                await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        err = await self.proc.stderr.read() if self.proc.stderr else b""
        if self._reader is not None:
            await self._reader
        return code, err.decode(errors="replace")


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def echo(_sender: str, data: bytes) -> bytes:
    return data


async def pump_gossip(i: int, t: Transport, topic: str) -> None:
    async for msg in t.subscribe(topic):
        out({"event": "gossip", "host": i, "sender": msg.sender, "data": msg.data.hex(), "t": time.time()})


async def pump_events(i: int, t: Transport) -> None:
    async for ev in t.peer_events():
        out({"event": ev.kind.value, "host": i, "peer": ev.peer})


async def handle(nodes: list[Transport], cmd: dict[str, Any]) -> dict[str, Any]:
    t = nodes[int(cmd.get("host", 0))]
    kind = cmd["cmd"]
    if kind == "connect":
        return {"peer": await t.connect(cmd["addr"], timeout=20.0)}
    if kind == "publish":
        await t.publish(cmd.get("topic", "itest/gossip"), bytes.fromhex(cmd["data"]))
        return {}
    if kind == "request":
        return {"data": (await t.request(cmd["peer"], ECHO, bytes.fromhex(cmd["data"]), timeout=20.0)).hex()}
    if kind == "fetch":
        t0 = time.perf_counter()
        blob = await t.fetch_blob(cmd["peer"], cmd["digest"], timeout=30.0)
        return {"sha256": sha256_hex(blob), "bytes": len(blob), "ms": (time.perf_counter() - t0) * 1000}
    if kind == "peers":
        return {"peers": t.peers()}
    raise ValueError(f"unknown command {kind!r}")


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", required=True, help="hex seed; host k uses sha256-derived seeds")
    ap.add_argument("--topic", default="itest/gossip")
    ap.add_argument("--blob-bytes", type=int, default=1 << 20)
    ap.add_argument("--hosts", type=int, default=1)
    args = ap.parse_args()
    base = bytes.fromhex(args.seed)
    nodes: list[Transport] = []
    ready = []
    tasks: list[asyncio.Task[None]] = []
    for k in range(args.hosts):
        ident = Identity(base if k == 0 else bytes.fromhex(sha256_hex(base + k.to_bytes(4, "big"))))
        t = P2PTransport(ident, listen=["/ip4/127.0.0.1/tcp/0"])
        store = MemoryBlobStore()
        digest = store.put(random.Random(ident.seed).randbytes(args.blob_bytes)) if args.blob_bytes else ""
        t.serve_blobs(store)
        t.serve(ECHO, echo)
        await t.start()
        nodes.append(t)
        tasks.append(asyncio.create_task(pump_events(k, t)))
        tasks.append(asyncio.create_task(pump_gossip(k, t, args.topic)))
        ready.append({"peer_id": t.peer_id, "addrs": t.listen_addrs, "blob": digest})
    out({"event": "ready", "peers": ready})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def run(cmd: dict[str, Any]) -> None:
        try:
            reply = await handle(nodes, cmd)
            out({"id": cmd.get("id"), "ok": True, **reply})
        except Exception as exc:  # reported to the driver, which decides
            out({"id": cmd.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "stop":
            break
        task = asyncio.create_task(run(cmd))
        pending.add(task)
        task.add_done_callback(pending.discard)
    for task in [*tasks, *pending]:
        task.cancel()
    await asyncio.gather(*tasks, *pending, return_exceptions=True)
    for t in nodes:
        await t.stop()
    out({"event": "stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
