"""Helpers of the libp2p host (:mod:`._p2p_host`) that hold no state of their own.

They run in the network thread (except :func:`multiaddrs_valid`); no libp2p type
leaves this package through them.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import multiaddr

from ..errors import LocalError
from ._transport import COUNTERS

__all__ = [
    "Counters",
    "raise_queue_limits",
    "configure_libp2p_logging",
    "peer_notifee",
    "dialable",
    "peer_id",
    "peer_str",
    "close_quietly",
    "reset_quietly",
    "multiaddrs_valid",
]

logger = logging.getLogger(__name__)



class Counters:
    """Thread-safe monotonic counters shared by both sides of the bridge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


def raise_queue_limits(size: int) -> None:
    """Raise py-libp2p's per-subscription and per-peer outbound queue sizes (32 by default).

    Both are read at use time from module globals, so this is process-wide and only
    ever raises the limits (several transports in one process agree on the largest).
    """
    import libp2p.pubsub.pubsub as ps_mod
    from libp2p.pubsub.rpc_queue import RpcQueue

    if size > ps_mod.SUBSCRIPTION_CHANNEL_SIZE:
        ps_mod.SUBSCRIPTION_CHANNEL_SIZE = size
    current = getattr(ps_mod.RpcQueue, "edgenode_size", 0)  # type: ignore[attr-defined]
    if current >= size:
        return

    class _SizedRpcQueue(RpcQueue):  # type: ignore[misc]
        edgenode_size = size

        def __init__(self, max_size: int = size) -> None:
            super().__init__(max_size=max(max_size, size))

    ps_mod.RpcQueue = _SizedRpcQueue  # type: ignore[attr-defined,assignment]


def configure_libp2p_logging() -> None:
    """py-libp2p detaches its logger unless LIBP2P_DEBUG is set; let it reach ours."""
    lg = logging.getLogger("libp2p")
    if not lg.handlers:
        lg.propagate = True
    # its auto-connector (which we keep idle) forces INFO on itself and logs "initiating 150 new dials"
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.WARNING)


def peer_notifee(changed: Callable[[], None]) -> Any:
    """A py-libp2p network notifee that calls ``changed()`` when a connection opens or closes."""
    from libp2p.abc import INotifee

    class _Notifee(INotifee):  # type: ignore[misc]
        async def connected(self, network: Any, conn: Any) -> None:
            changed()

        async def disconnected(self, network: Any, conn: Any) -> None:
            changed()

        async def opened_stream(self, network: Any, stream: Any) -> None:
            return None

        async def closed_stream(self, network: Any, stream: Any) -> None:
            return None

        async def listen(self, network: Any, multiaddr: Any) -> None:
            return None

        async def listen_close(self, network: Any, multiaddr: Any) -> None:
            return None

    return _Notifee()


def dialable(addrs: Sequence[Any]) -> list[str]:
    """Transport addresses with 0.0.0.0 replaced by this machine's IPv4 addresses (loopback last)."""
    from libp2p.utils.address_validation import expand_wildcard_address

    out: list[str] = []
    for addr in addrs:
        text = str(addr)
        if not text.startswith("/ip4/0.0.0.0/"):
            out.append(text)
            continue
        ips = [str(m.value_for_protocol("ip4")) for m in expand_wildcard_address(addr)]
        for ip in [*[i for i in ips if i not in ("0.0.0.0", "127.0.0.1")], "127.0.0.1"]:
            out.append(text.replace("/ip4/0.0.0.0/", f"/ip4/{ip}/", 1))
    return list(dict.fromkeys(out))


@functools.lru_cache(maxsize=4096)
def peer_id(peer: str) -> Any:
    """The libp2p ID of a base58 peer id string, or None (cached: decoding it is slow)."""
    from libp2p.peer.id import ID

    try:
        return ID.from_base58(peer)
    except Exception:  # base58/multihash errors of many types
        return None


@functools.lru_cache(maxsize=4096)
def peer_str(raw: bytes) -> str | None:
    """The base58 peer id of a gossip origin (cached: py-libp2p's base58 is slow, and it runs
    for every message in the validator and again in the pump)."""
    from libp2p.peer.id import ID

    try:
        return str(ID(raw).to_base58())
    except Exception:  # malformed origin id from the wire
        return None


async def close_quietly(stream: Any) -> None:
    try:
        await stream.close()
    except Exception as exc:  # already closed or reset by the peer
        logger.debug("closing a stream: %r", exc)


async def reset_quietly(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception as exc:  # already gone
        logger.debug("resetting a stream: %r", exc)


def multiaddrs_valid(addrs: Sequence[str]) -> None:
    """LocalError unless every string parses as a multiaddr."""
    for a in addrs:
        try:
            multiaddr.Multiaddr(a)
        except Exception as exc:  # multiaddr raises several types
            raise LocalError(f"bad multiaddr {a!r}: {exc}") from exc
