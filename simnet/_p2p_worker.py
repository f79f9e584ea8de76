"""A worker process of the libp2p backend: one :class:`~simnet._p2p_group.NodeGroup` behind a pipe.

Started by :class:`simnet._p2p_handles.ProcessLauncher` as ``python -m simnet._p2p_worker``.
It reads one JSON command a line on stdin (the group's commands, see
:mod:`simnet._p2p_group`) and answers each, in order, with ``REPLY <json>`` or
``FAILED <text>`` on stdout.  Each gossip probe a node receives is reported as
``PROBE <msg_id> <peer_id>`` in between.  ``{"op": "stop"}`` stops the nodes and ends the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from edgenode.errors import EdgenodeError

from ._p2p_group import NodeGroup, quiet_gossipsub_warnings

__all__ = ["main"]


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _serve() -> None:
    group = NodeGroup(on_probe=lambda msg_id, peer: _out(f"PROBE {msg_id} {peer}"))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            try:
                answer = await group.handle(cmd)
            except EdgenodeError as exc:
                _out(f"FAILED {exc}")
                continue
            _out("REPLY " + json.dumps(answer))
            if cmd.get("op") == "stop":
                return
    finally:
        await group.stop()


def main() -> None:
    quiet_gossipsub_warnings()
    asyncio.run(_serve())
    sys.stdout.flush()
    os._exit(0)  # skip the teardown that can abort in wasmtime's runtime threads


if __name__ == "__main__":
    main()
