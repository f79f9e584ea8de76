"""One net.p2p transport as a process (run inside a namespace), driven by JSON lines on stdin.

    python tests/nat/_agent.py --listen MULTIADDR [--relay] [--bootstrap MULTIADDR] [--blob-bytes N]

Prints ``{"event": "ready", "peer_id", "addrs", "blob"}`` once listening; then answers each
command line (``{"id": n, "cmd": ...}``) with one line ``{"id": n, "ok": bool, ...}``:
``connect addr`` / ``find_peer peer`` / ``request peer data`` (echo; ``ms``) /
``kinds`` / ``state`` (relays, listen addresses, reachability, counters) / ``provide`` (its
blob) / ``find_providers digest`` / ``fetch peer digest`` / ``drop peer`` / ``stop``.
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
from typing import Any

from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.p2p import P2PConfig, P2PTransport

ECHO = "/nattest/echo/1"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--relay", action="store_true")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--blob-bytes", type=int, default=4096)
    args = ap.parse_args()
    config = dataclasses.replace(P2PConfig(), relay_hop=args.relay, dht_query_timeout=8.0, dial_timeout=8.0)
    t = P2PTransport(Identity.generate(), listen=[args.listen], bootstrap=[args.bootstrap] if args.bootstrap else None,
                     config=config)
    blob = os.urandom(args.blob_bytes)
    store = MemoryBlobStore()
    digest = store.put(blob)

    async def echo(_sender: str, data: bytes) -> bytes:
        return data

    t.serve(ECHO, echo)
    t.serve_blobs(store)
    await t.start()
    out({"event": "ready", "peer_id": t.peer_id, "addrs": t.listen_addrs, "blob": digest})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            msg = json.loads(line)
            try:
                reply = await handle(t, msg, digest)
                reply["ok"] = True
            except Exception as exc:  # reported to the driver, which asserts on it
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            reply["id"] = msg["id"]
            out(reply)
            if msg["cmd"] == "stop":
                break
    finally:
        await t.stop()


async def handle(t: P2PTransport, msg: dict[str, Any], digest: str) -> dict[str, Any]:
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
    if cmd == "stop":
        return {}
    raise ValueError(f"unknown command {cmd!r}")


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
