"""Sans-IO tables of what the node knows about its peers: adverts with expiry, round-trip times."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..protocol._messages import Advert

__all__ = ["AdvertTable", "RttTable", "DEFAULT_ADVERT_TTL_MS", "DEFAULT_MAX_ADVERTS", "DEFAULT_MAX_RTT_PEERS"]

DEFAULT_ADVERT_TTL_MS = 15_000
"""An advert not refreshed for this long is dropped."""
DEFAULT_MAX_ADVERTS = 1024
"""Peers whose adverts are held at once; a new one pushes out the advert received longest ago."""
DEFAULT_MAX_RTT_PEERS = 4096
"""Peers whose round-trip times are kept (least recently observed dropped first)."""


@dataclass(frozen=True)
class _Held:
    advert: Advert
    sealed: bytes
    received_ms: int


class AdvertTable:
    """The freshest advert of each peer, expiring ``ttl_ms`` after it was received.

    At most ``max_entries`` peers are held.  Entries are kept in the order they were
    last received, so a full table drops the stalest advert: honest peers refresh
    theirs every few seconds, and a flood of throwaway keys only pushes out adverts
    older than the flood's own turnover.
    """

    def __init__(self, ttl_ms: int = DEFAULT_ADVERT_TTL_MS, max_entries: int = DEFAULT_MAX_ADVERTS) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._held: OrderedDict[str, _Held] = OrderedDict()

    def update(self, advert: Advert, sealed: bytes, now_ms: int) -> bool:
        """Keep ``advert`` if it is newer than what we hold; return whether it was kept."""
        old = self._held.get(advert.peer_id)
        if old is not None and old.advert.seq >= advert.seq and now_ms - old.received_ms < self.ttl_ms:
            return False
        self._held[advert.peer_id] = _Held(advert, sealed, now_ms)
        self._held.move_to_end(advert.peer_id)
        if len(self._held) > self.max_entries:
            self.expire(now_ms)
            while len(self._held) > self.max_entries:
                self._held.popitem(last=False)
        return True

    def note_load(self, peer: str, queue_len: int, free_slots: int) -> None:
        """Refine a peer's load from a direct answer (e.g. a busy reply) until its next advert."""
        old = self._held.get(peer)
        if old is None:
            return
        a = old.advert
        new = Advert(
            a.peer_id, a.addrs, a.capabilities, a.slots, free_slots, queue_len, a.queue_cap,
            a.cost_class, a.version, a.seq, a.issued_ms,
        )
        self._held[peer] = _Held(new, old.sealed, old.received_ms)

    def remove(self, peer: str) -> None:
        self._held.pop(peer, None)

    def expire(self, now_ms: int) -> list[str]:
        """Drop stale adverts; return the peers dropped."""
        gone = [p for p, h in self._held.items() if now_ms - h.received_ms >= self.ttl_ms]
        for p in gone:
            del self._held[p]
        return gone

    def live(self, now_ms: int) -> list[Advert]:
        """Adverts still fresh at ``now_ms``, ordered by peer id."""
        return [h.advert for p, h in sorted(self._held.items()) if now_ms - h.received_ms < self.ttl_ms]

    def sealed(self, now_ms: int) -> list[bytes]:
        return [h.sealed for _, h in sorted(self._held.items()) if now_ms - h.received_ms < self.ttl_ms]

    def get(self, peer: str) -> Advert | None:
        h = self._held.get(peer)
        return None if h is None else h.advert

    def next_deadline(self) -> int | None:
        """When the next advert expires (ms), or None when the table is empty."""
        if not self._held:
            return None
        return min(h.received_ms for h in self._held.values()) + self.ttl_ms

    def __len__(self) -> int:
        return len(self._held)


class RttTable:
    """Smoothed round-trip time per peer (EWMA, like TCP's SRTT)."""

    def __init__(self, alpha: float = 0.25, default_ms: float = 50.0, max_peers: int = DEFAULT_MAX_RTT_PEERS) -> None:
        self.alpha = alpha
        self.default_ms = default_ms
        self.max_peers = max_peers
        self._rtt: OrderedDict[str, float] = OrderedDict()

    def observe(self, peer: str, rtt_ms: float) -> None:
        old = self._rtt.pop(peer, None)
        self._rtt[peer] = rtt_ms if old is None else (1 - self.alpha) * old + self.alpha * rtt_ms
        while len(self._rtt) > self.max_peers:
            self._rtt.popitem(last=False)

    def get(self, peer: str) -> float:
        return self._rtt.get(peer, self.default_ms)

    def known(self, peer: str) -> bool:
        return peer in self._rtt
