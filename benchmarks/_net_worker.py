"""One libp2p host (``edgenode.net.p2p.P2PTransport``) in its own process, for ``bench_net_profile.py``.

    python benchmarks/_net_worker.py [--topic T]

Prints ``{"event": "ready", "pid", "peer_id", "addr"}`` once it listens on 127.0.0.1;
it always serves the echo protocol :data:`ECHO`.  Then reads commands, one JSON object
per line with an ``id`` that its reply echoes (``{"id", "ok", ...}``):

* ``{"cmd": "connect", "addr": A}`` -> ``{"peer": P}``
* ``{"cmd": "subscribe"}``: subscribes to the topic with a trivial validator (as nodes
  validate every message) and counts deliveries from then on.
* ``{"cmd": "publish", "data": HEX}``: one message.
* ``{"cmd": "publish_many", "count": M, "size": B, "rate": R}``: M messages of B bytes at
  a steady R per second (on an absolute schedule) -> ``{"elapsed_s"}``.
* ``{"cmd": "wait_count", "count": N, "wait": S}``: until N messages were delivered here
  (or S seconds) -> ``{"count"}``; ``{"cmd": "reset_count"}`` sets the count to 0.
* ``{"cmd": "requests", "peer": P, "count": N, "size": B}``: N sequential echo requests of
  B bytes -> ``{"rtt_ms": [...]}``.
* ``{"cmd": "stop"}``: stops the transport and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenode.identity import Identity
from edgenode.net.p2p import P2PTransport

ECHO = "/bench/echo/1"
TOPIC = "bench/profile"


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, t: P2PTransport, topic: str) -> None:
        self.t = t
        self.topic = topic
        self.count = 0
        self.changed = asyncio.Event()
        self.pump: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        async for _msg in self.t.subscribe(self.topic):
            self.count += 1
            self.changed.set()

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        kind = cmd["cmd"]
        if kind == "connect":
            return {"peer": await self.t.connect(cmd["addr"], timeout=30.0)}
        if kind == "subscribe":
            self.t.set_validator(self.topic, lambda _sender, _data: True)
            if self.pump is None:
                self.pump = asyncio.create_task(self._pump())
            return {}
        if kind == "publish":
            await self.t.publish(self.topic, bytes.fromhex(cmd["data"]))
            return {}
        if kind == "publish_many":
            count, size, rate = int(cmd["count"]), int(cmd["size"]), float(cmd["rate"])
            t0 = time.monotonic()
            for i in range(count):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.t.publish(self.topic, i.to_bytes(4, "big") + os.urandom(max(0, size - 4)))
            return {"elapsed_s": time.monotonic() - t0}
        if kind == "reset_count":
            self.count = 0
            return {}
        if kind == "wait_count":
            deadline = time.monotonic() + float(cmd["wait"])
            while self.count < int(cmd["count"]) and time.monotonic() < deadline:
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
            return {"count": self.count}
        if kind == "requests":
            payload = os.urandom(int(cmd["size"]))
            rtt = []
            for _ in range(int(cmd["count"])):
                t0 = time.perf_counter()
                await self.t.request(cmd["peer"], ECHO, payload, timeout=30.0)
                rtt.append((time.perf_counter() - t0) * 1000)
            return {"rtt_ms": rtt}
        raise ValueError(f"unknown command {kind!r}")


async def echo(_sender: str, data: bytes) -> bytes:
    return data


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topic", default=TOPIC)
    args = ap.parse_args()
    t = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])
    t.serve(ECHO, echo)
    await t.start()
    worker = Worker(t, args.topic)
    out({"event": "ready", "pid": os.getpid(), "peer_id": t.peer_id, "addr": t.listen_addrs[0]})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def run(cmd: dict[str, Any]) -> None:
        try:
            out({"id": cmd.get("id"), "ok": True, **(await worker.handle(cmd))})
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
    for task in [*pending, *([worker.pump] if worker.pump else [])]:
        task.cancel()
    await asyncio.gather(*pending, *([worker.pump] if worker.pump else []), return_exceptions=True)
    await t.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
