"""The Ray backend: the libp2p swarm's node groups as Ray actors, placed across a Ray cluster.

``simnet run SCENARIO --backend ray [--ray-address ADDR]``.  Each actor hosts one
:class:`~simnet._p2p_group.NodeGroup` (real py-libp2p hosts listening on its Ray node's
address, SQLite ledgers in a directory of that machine, the real sandbox) and answers the
same commands a worker process answers on its pipe, as actor calls.  The driver
(:class:`~simnet._p2p.P2PSwarm`, unchanged) wires the bootstrap topology across machines,
runs the workload and the faults, and gathers ledgers and figures.

Placement: one group per CPU the cluster's alive nodes advertise (more when a group would
exceed 64 nodes), dealt round-robin over the Ray nodes in proportion to their CPUs, each
actor pinned to its node (``NodeAffinitySchedulingStrategy``, not soft) and asking for its
share of that node's CPUs.  Gossip probes come back on a streaming actor call as they are
delivered; progress is polled once a second.

This is the only module of the project that imports ``ray`` (an optional extra:
``pip install 'edgenode[ray]'``); without it, importing this module raises a
:class:`~simnet.SimnetError` that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from typing import Any

from edgenode.errors import EdgenodeError

from ._errors import SimnetError
from ._p2p_group import NodeGroup, quiet_gossipsub_warnings
from ._p2p_handles import LOOPBACK, GroupHandle, GroupLauncher, ProbeSink, deal_groups

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage anywhere (read by ray.init)
try:
    import ray
    import ray.exceptions
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - exercised by a test that hides ray
    raise SimnetError("the ray backend needs Ray: pip install 'edgenode[ray]' (or: pip install ray==2.55.1)") from exc

__all__ = ["RayLauncher", "RayGroup", "OBJECT_STORE_MB"]

OBJECT_STORE_MB = 200
"""Object store of a local Ray instance started by simnet: the groups pass small JSON answers only."""
PLACE_TIMEOUT_S = 120.0
"""How long an actor may wait for its Ray node's resources before the run gives up."""


class _GroupActor:
    """The Ray actor: one node group on the actor's asyncio loop (an async actor)."""

    def __init__(self) -> None:
        quiet_gossipsub_warnings()
        self._probes: asyncio.Queue[tuple[str, str]] | None = None
        self._group: NodeGroup | None = None

    def _ensure(self) -> tuple[NodeGroup, asyncio.Queue[tuple[str, str]]]:
        if self._group is None or self._probes is None:  # built on the actor's loop, not in __init__
            probes: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            self._probes = probes
            self._group = NodeGroup(on_probe=lambda msg_id, peer: probes.put_nowait((msg_id, peer)))
        return self._group, self._probes

    async def where(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "ray_node": ctx.get_node_id(),
            "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    async def handle(self, cmd: dict[str, Any]) -> Any:
        group, _ = self._ensure()
        try:
            return await group.handle(cmd)
        except EdgenodeError as exc:  # plain text across the wire: the driver raises SimnetError with it
            return {"__failed__": str(exc)}

    async def probes(self) -> Any:
        """Streams batches of ``(msg_id, peer_id)`` gossip probe deliveries as they happen."""
        _, queue = self._ensure()
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            yield batch


_RemoteGroupActor: Any = ray.remote(_GroupActor)


class RayGroup(GroupHandle):
    """A group hosted by a Ray actor pinned to one Ray node."""

    def __init__(self, group: int, actor: Any, node: dict[str, Any], on_probe: ProbeSink) -> None:
        super().__init__(group, str(node["NodeManagerAddress"]))
        self.actor = actor
        node_id = str(node["NodeID"])
        self.placement.update(
            backend="ray", ray_node=node_id, ip=self.listen_ip, where=f"ray node {node_id[:8]} ({self.listen_ip})"
        )
        self._on_probe = on_probe
        self._pump: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Wait until the actor runs (its node had the resources); note its host and pid."""
        try:
            seen = await asyncio.wait_for(self.actor.where.remote(), PLACE_TIMEOUT_S)
        except TimeoutError as exc:
            raise SimnetError(
                f"Ray did not start node group {self.group} on {self.placement['where']} within "
                f"{PLACE_TIMEOUT_S:.0f} s (are its CPUs taken?)"
            ) from exc
        except ray.exceptions.RayError as exc:
            raise SimnetError(f"Ray could not start node group {self.group}: {exc}") from exc
        self.placement.update(host=seen["host"], pid=seen["pid"])
        self._pump = asyncio.create_task(self._stream_probes())

    async def _stream_probes(self) -> None:
        with contextlib.suppress(ray.exceptions.RayError):
            async for ref in self.actor.probes.remote():
                for msg_id, peer in await ref:
                    self._on_probe(msg_id, peer)

    async def _call(self, cmd: dict[str, Any]) -> Any:
        try:
            out = await self.actor.handle.remote(cmd)
        except ray.exceptions.RayError as exc:
            where = self.placement["where"]
            raise SimnetError(f"node group {self.group} ({where}): {cmd['op']} failed: {exc}") from exc
        if isinstance(out, dict) and "__failed__" in out:
            raise SimnetError(f"node group {self.group}: {cmd['op']} failed: {out['__failed__']}")
        return out

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        ray.kill(self.actor)


@contextlib.contextmanager
def _loopback_addresses(address: str | None) -> Iterator[None]:
    """Keep ``ray.init`` on loopback for a local instance (``address`` None) or a loopback cluster.

    ray.init rewrites 127.0.0.1 (in an address to connect to, or as the node's own address)
    to this machine's outward address, which a cluster started with ``--node-ip-address
    127.0.0.1`` (a one-machine rehearsal, the tests) does not listen on, and which a local
    instance has no need to expose.  Ray skips that rewrite where multi-machine clusters are
    off (its ENABLE_RAY_CLUSTER constant), so it is turned off for that call only.
    """
    host = LOOPBACK if address is None else address.rpartition(":")[0]
    if host not in (LOOPBACK, "localhost"):
        yield
        return
    import ray._private.ray_constants as ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


class RayLauncher(GroupLauncher):
    """Node groups as Ray actors across the cluster at ``address`` (a local Ray instance when None)."""

    kind = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.log_to_driver = log_to_driver
        self._owned = False
        self._nodes: list[dict[str, Any]] = []
        self._groups: list[RayGroup] = []

    def _connect(self) -> None:
        if self._nodes:
            return
        with warnings.catch_warnings():
            # ray 2.55 warns at every init that a later version will stop overriding accelerator env vars
            warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
            if ray.is_initialized():
                pass  # a caller's own connection: theirs to shut down
            elif self.address is not None:
                with _loopback_addresses(self.address):
                    ray.init(
                        address=self.address, log_to_driver=self.log_to_driver, logging_level=logging.WARNING
                    )
                self._owned = True
            else:
                with _loopback_addresses(None):
                    ray.init(
                        num_cpus=self.num_cpus or os.cpu_count() or 1,
                        object_store_memory=OBJECT_STORE_MB * 1024 * 1024,
                        include_dashboard=False,
                        _node_ip_address=LOOPBACK,
                        log_to_driver=self.log_to_driver,
                        logging_level=logging.WARNING,
                    )
                self._owned = True
        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        alive = [n for n in nodes if n.get("Alive") and float(n.get("Resources", {}).get("CPU", 0)) > 0]
        if not alive:
            raise SimnetError("the Ray cluster has no alive node with CPUs")
        self._nodes = sorted(alive, key=lambda n: (str(n["NodeManagerAddress"]), str(n["NodeID"])))
        self.driver_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]

    def slots(self) -> int:
        self._connect()
        return sum(max(1, int(float(n["Resources"]["CPU"]))) for n in self._nodes)

    def _plan(self, groups: int) -> list[dict[str, Any]]:
        """The Ray node of each group: round-robin over the nodes, each as often as it has CPUs."""
        cpus = [int(float(n["Resources"]["CPU"])) for n in self._nodes]
        return [self._nodes[m] for m in deal_groups(cpus, groups)]

    def where(self, groups: int) -> str:
        used = {h.placement["ray_node"] for h in self._groups}
        return f"{groups} Ray actors on {len(used)} Ray nodes ({len(self._nodes)} in the cluster), real hosts"

    async def launch(self, groups: int, on_probe: ProbeSink) -> list[GroupHandle]:
        self._connect()
        plan = self._plan(groups)
        on_node = {str(n["NodeID"]): sum(1 for p in plan if p is n) for n in self._nodes}
        for g, node in enumerate(plan):
            node_id = str(node["NodeID"])
            share = round(float(node["Resources"]["CPU"]) / on_node[node_id], 4)
            actor = _RemoteGroupActor.options(
                num_cpus=share,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                name=None,
            ).remote()
            self._groups.append(RayGroup(g, actor, node, on_probe))
        await asyncio.gather(*(h.ready() for h in self._groups))
        return list(self._groups)

    async def close(self) -> None:
        self._groups.clear()
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False
        self._nodes = []
