"""Sans-IO contract net: a submitter's offer book and a node's bidding rule."""

from __future__ import annotations

from ..protocol._messages import Advert, Bid, Offer
from ._placement import COST_RANK, SLA_COST, expected_ms

__all__ = ["OfferBook", "make_bid"]


class OfferBook:
    """Bids received for one offer until it expires."""

    def __init__(self, offer: Offer) -> None:
        self.offer = offer
        self.bids: dict[str, Bid] = {}

    def add(self, bid: Bid, sender: str, now_ms: int) -> bool:
        """Keep a bid if it answers this offer, comes from its bidder and is still valid."""
        if bid.offer_id != self.offer.offer_id or bid.bidder != sender:
            return False
        if now_ms >= self.offer.expires_ms or now_ms >= bid.expires_ms:
            return False
        if bid.expected_ms > self.offer.deadline_ms:
            return False
        self.bids[sender] = bid
        return True

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.offer.expires_ms

    def ranked(self, sla: str, now_ms: int) -> list[Bid]:
        """Valid bids, best first for ``sla``."""
        live = [b for b in self.bids.values() if b.expires_ms > now_ms]
        if sla == SLA_COST:
            return sorted(live, key=lambda b: (COST_RANK.get(b.cost_class, 9), b.expected_ms, b.bidder))
        return sorted(live, key=lambda b: (b.expected_ms, b.load, b.bidder))


def make_bid(offer: Offer, advert: Advert, now_ms: int, run_ms: float = 5.0, rtt_ms: float = 5.0) -> Bid | None:
    """A node's bid for ``offer``, or None when it lacks a capability, is full, or would miss the deadline."""
    if now_ms >= offer.expires_ms:
        return None
    caps = set(advert.capabilities)
    if offer.kind not in caps or not all(r in caps for r in offer.requires):
        return None
    if advert.free_slots <= 0 and advert.queue_len >= advert.queue_cap:
        return None
    exp = expected_ms(advert, rtt_ms, run_ms)
    if exp > offer.deadline_ms:
        return None
    load = (advert.slots - advert.free_slots + advert.queue_len) / max(1, advert.slots + advert.queue_cap)
    return Bid(offer.offer_id, advert.peer_id, advert.addrs, load, exp, advert.cost_class, offer.expires_ms)
