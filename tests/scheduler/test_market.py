"""Contract net: bids for offers, ranking, expiry."""

from __future__ import annotations

from edgenode.protocol import Advert, Bid, Offer
from edgenode.scheduler import SLA_COST, SLA_LATENCY, OfferBook, make_bid


def offer(expires: int = 1000, deadline: int = 500, requires: tuple[str, ...] = ("wasm",)) -> Offer:
    return Offer("o1", "wasm", "m" * 64, requires, deadline, expires, ())


def adv(peer: str, caps: tuple[str, ...] = ("wasm",), free: int = 2, queue: int = 0, cost: str = "standard") -> Advert:
    return Advert(peer, (f"/mem/{peer}",), caps, 2, free, queue, 4, cost, "0.1", 1, 0)


def test_make_bid_rules() -> None:
    assert make_bid(offer(), adv("a"), 0) is not None
    assert make_bid(offer(), adv("a", caps=("infer",)), 0) is None
    assert make_bid(offer(requires=("wasm", "model:x")), adv("a"), 0) is None
    assert make_bid(offer(), adv("a", free=0, queue=4), 0) is None
    assert make_bid(offer(), adv("a"), 1000) is None
    assert make_bid(offer(deadline=1), adv("a"), 0) is None
    b = make_bid(offer(), adv("a", free=1, queue=1), 0)
    assert b is not None and b.bidder == "a" and 0 < b.load < 1 and b.expires_ms == 1000


def test_offer_book_ranks_and_checks() -> None:
    book = OfferBook(offer())
    fast = Bid("o1", "fast", (), 0.5, 5.0, "premium", 1000)
    cheap = Bid("o1", "cheap", (), 0.1, 50.0, "low", 1000)
    assert book.add(fast, "fast", 10) and book.add(cheap, "cheap", 10)
    assert not book.add(Bid("o2", "x", (), 0, 1, "low", 1000), "x", 10)  # other offer
    assert not book.add(Bid("o1", "x", (), 0, 1, "low", 1000), "mallory", 10)  # not its bidder
    assert not book.add(Bid("o1", "late", (), 0, 1, "low", 1000), "late", 1000)  # offer expired
    assert not book.add(Bid("o1", "slow", (), 0, 900, "low", 1000), "slow", 10)  # misses deadline
    assert [b.bidder for b in book.ranked(SLA_LATENCY, 20)] == ["fast", "cheap"]
    assert [b.bidder for b in book.ranked(SLA_COST, 20)] == ["cheap", "fast"]
    assert book.expired(1000) and not book.expired(999)
    assert book.ranked(SLA_LATENCY, 1000) == []
