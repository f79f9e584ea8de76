"""One net.p2p transport as a process (run inside a namespace), driven by JSON lines on stdin.

    python tests/nat/_agent.py --listen MULTIADDR [--relay] [--bootstrap MULTIADDR] [--blob-bytes N] [--node [--wasm]]

``--node`` runs a whole node on the transport (``edgenode.runtime.build_runtime``, as ``edgenode
run`` does; ``--wasm`` gives it a sandbox, so it executes WASM tasks).

Prints ``{"event": "ready", "peer_id", "addrs", "blob"}`` once listening; then answers each
command line (``{"id": n, "cmd": ...}``) with one line ``{"id": n, "ok": bool, ...}``:
``connect addr`` / ``find_peer peer`` / ``request peer data`` (echo; ``ms``) /
``kinds`` / ``state`` (relays, listen addresses, reachability, counters) / ``provide`` (its
blob) / ``find_providers digest`` / ``fetch peer digest`` / ``drop peer`` / ``submit input`` (a light
submitter on this transport, as ``edgenode submit``: the cat task, verified receipt, ``ms``) / ``stop``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import wasmtime

from edgenode.config import NodeConfig
from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.p2p import P2PConfig, P2PTransport
from edgenode.protocol import KIND_WASM
from edgenode.runtime import Runtime, build_runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import Submitter, TaskRequest
from ledger import MemoryLedgerStore

ECHO = "/nattest/echo/1"
CAT = Path(__file__).resolve().parents[1] / "node" / "cat.wat"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--relay", action="store_true")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--blob-bytes", type=int, default=4096)
    ap.add_argument("--node", action="store_true")
    ap.add_argument("--wasm", action="store_true")
    args = ap.parse_args()
    if os.environ.get("EDGENODE_NAT_DEBUG"):  # py-libp2p's relay/DCUtR log on stderr (the driver keeps its tail)
        import logging

        logging.basicConfig(stream=sys.stderr, format="%(relativeCreated)d %(name)s %(message)s")
        for name in os.environ["EDGENODE_NAT_DEBUG"].split(","):
            logging.getLogger(name).setLevel(logging.DEBUG)
    config = dataclasses.replace(P2PConfig(), relay_hop=args.relay, dht_query_timeout=8.0, dial_timeout=8.0)
    ident = Identity.generate()
    t = P2PTransport(ident, listen=[args.listen], bootstrap=[args.bootstrap] if args.bootstrap else None,
                     config=config)
    blob = os.urandom(args.blob_bytes)
    store = MemoryBlobStore()
    digest = store.put(blob)

    async def echo(_sender: str, data: bytes) -> bytes:
        return data

    t.serve(ECHO, echo)
    sandbox = Sandbox() if args.wasm else None
    rt: Runtime | None = None
    if args.node:
        rt = build_runtime(ident, NodeConfig(), t, MemoryLedgerStore(), sandbox=sandbox, fl=False)
        await rt.start()
    else:
        t.serve_blobs(store)
        await t.start()
    light = Light(ident, t)
    out({"event": "ready", "peer_id": t.peer_id, "addrs": t.listen_addrs, "blob": digest})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            msg = json.loads(line)
            try:
                reply = await handle(t, msg, digest, light)
                reply["ok"] = True
            except Exception as exc:  # reported to the driver, which asserts on it
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            reply["id"] = msg["id"]
            out(reply)
            if msg["cmd"] == "stop":
                break
    finally:
        await light.close()
        if rt is not None:
            await rt.stop()
        else:
            await t.stop()
        if sandbox is not None:
            sandbox.close()


class Light:
    """A light submitter on the agent's transport (what ``edgenode submit`` is), made on first use."""

    def __init__(self, ident: Identity, t: P2PTransport) -> None:
        self._ident, self._t = ident, t
        self.sub: Submitter | None = None
        self.module = ""

    async def submit(self, data: bytes, deadline_ms: int) -> dict[str, Any]:
        if self.sub is None:
            self.sub = Submitter(self._ident, self._t)
            self.module = self.sub.add_module(bytes(wasmtime.wat2wasm(CAT.read_text())))
            await self.sub.start()
        await self.sub.refresh()  # adverts from the connected peers (the relay node holds the others')
        t0 = time.monotonic()
        outcome = await self.sub.submit(TaskRequest(KIND_WASM, self.module, input=data, deadline_ms=deadline_ms))
        ms = (time.monotonic() - t0) * 1000
        return {"status": outcome.status, "output": outcome.output.decode(), "executor": outcome.executor,
                "receipts": [r.executor for r in outcome.receipts], "notes": list(outcome.notes), "ms": ms}

    async def close(self) -> None:
        if self.sub is not None:
            await self.sub.close()


async def handle(t: P2PTransport, msg: dict[str, Any], digest: str, light: Light) -> dict[str, Any]:
    cmd = msg["cmd"]
    if cmd == "connect":
        return {"peer": await t.connect(msg["addr"], timeout=15.0)}
    if cmd == "find_peer":
        t0 = time.monotonic()
        addrs = await t.find_peer(msg["peer"])
        return {"addrs": addrs, "ms": (time.monotonic() - t0) * 1000}
    if cmd == "request":
        t0 = time.monotonic()
        data = await t.request(msg["peer"], ECHO, msg["data"].encode(), timeout=msg.get("timeout", 30.0))
        return {"data": data.decode(), "ms": (time.monotonic() - t0) * 1000}
    if cmd == "kinds":
        return {"kinds": await t.connection_kinds()}
    if cmd == "state":
        return {"relays": t.relays, "addrs": t.listen_addrs, "reachability": t.reachability, "counters": t.counters,
                "peers": t.peers()}
    if cmd == "provide":
        return {"provided": await t.provide(digest)}
    if cmd == "find_providers":
        return {"providers": await t.find_providers(msg["digest"])}
    if cmd == "fetch":
        data = await t.fetch_blob(msg["peer"], msg["digest"], timeout=30.0)
        return {"sha256": hashlib.sha256(data).hexdigest()}
    if cmd == "drop":
        await t.disconnect(msg["peer"])
        return {}
    if cmd == "submit":
        return await light.submit(msg["data"].encode(), msg.get("deadline_ms", 60_000))
    if cmd == "stop":
        return {}
    raise ValueError(f"unknown command {cmd!r}")


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
