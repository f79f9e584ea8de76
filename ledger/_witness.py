"""Whose chains a node replicates, and how much of each: sans-IO bookkeeping with byte budgets.

A node witnesses (stores a replica of) a few peers' chains.  :class:`WitnessTable` decides
which: a peer announcing its head takes a free slot; when none is free, the slot of the
witness heard from least recently is given up if that one has been silent for ``idle_s``
(a peer that left or went quiet); otherwise the newcomer is refused.  Each witness has a byte budget: the caller charges
the bytes it stores, asks :meth:`room` before storing a batch, and calls :meth:`exhaust`
when a chain outgrows its budget; the peer then loses its slot and is not given one again
(a bounded memory of such peers).  Time is a parameter (seconds, monotonic).

:func:`take_within` cuts a batch of entries to a byte budget, never below one entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from ._entry import Entry

__all__ = ["WitnessTable", "take_within", "entry_size"]


def entry_size(entry: Entry) -> int:
    """Bytes ``entry`` takes on the wire and (about) in a store."""
    return len(entry.to_bytes())


def take_within(entries: Sequence[Entry], max_bytes: int, *, at_least_one: bool = True) -> list[Entry]:
    """The longest prefix of ``entries`` whose sizes add up to at most ``max_bytes``.

    With ``at_least_one`` the first entry is always taken, however large, so a range answer
    always makes progress.
    """
    out: list[Entry] = []
    total = 0
    for e in entries:
        n = entry_size(e)
        if (out or not at_least_one) and total + n > max_bytes:
            break
        out.append(e)
        total += n
    return out


class WitnessTable:
    """Slots for witnessed peers (least recently heard first out) and a byte budget per peer."""

    def __init__(self, slots: int, budget_bytes: int, idle_s: float, *, remember: int = 1024) -> None:
        if slots < 0 or budget_bytes < 0 or idle_s < 0 or remember < 0:
            raise ValueError("slots, budget_bytes, idle_s and remember must be >= 0")
        self.slots = slots
        self.budget_bytes = budget_bytes
        self.idle_s = idle_s
        self._remember = remember
        self._heard: OrderedDict[str, float] = OrderedDict()  # witness -> last head, oldest first
        self._spent: dict[str, int] = {}
        self._exhausted: OrderedDict[str, None] = OrderedDict()
        self.counters: dict[str, int] = {"granted": 0, "rotated": 0, "refused_slots": 0, "refused_budget": 0}

    @property
    def peers(self) -> set[str]:
        """Peers holding a slot now."""
        return set(self._heard)

    def __contains__(self, peer: object) -> bool:
        return peer in self._heard

    def offer(self, peer: str, now: float) -> str | None:
        """``peer`` announced its head at ``now``: None when it holds a slot (kept or granted), else why not.

        The reasons are ``"budget"`` (its chain outgrew the budget before) and ``"slots"`` (every
        slot is held by a peer heard within ``idle_s``).
        """
        if peer in self._heard:
            self._heard[peer] = now
            self._heard.move_to_end(peer)
            return None
        if peer in self._exhausted:
            self.counters["refused_budget"] += 1
            return "budget"
        if len(self._heard) >= self.slots:
            victim = self._victim(now)
            if victim is None:
                self.counters["refused_slots"] += 1
                return "slots"
            self.release(victim)
            self.counters["rotated"] += 1
        self._heard[peer] = now
        self.counters["granted"] += 1
        return None

    def _victim(self, now: float) -> str | None:
        peer, last = next(iter(self._heard.items()), ("", now))  # the least recently heard
        return peer if peer and now - last >= self.idle_s else None

    def release(self, peer: str) -> None:
        """``peer`` gives up its slot (it left); its byte count is forgotten with it."""
        self._heard.pop(peer, None)
        self._spent.pop(peer, None)

    def known(self, peer: str) -> bool:
        """True once the bytes already stored for ``peer`` were counted (:meth:`charge` or :meth:`seed`)."""
        return peer in self._spent

    def seed(self, peer: str, stored: int) -> None:
        """Start ``peer``'s count at the bytes already stored (e.g. after a restart)."""
        self._spent[peer] = stored

    def room(self, peer: str) -> int:
        """Bytes ``peer``'s chain may still add."""
        return max(0, self.budget_bytes - self._spent.get(peer, 0))

    def charge(self, peer: str, n: int) -> None:
        """``n`` more bytes of ``peer``'s chain were stored."""
        self._spent[peer] = self._spent.get(peer, 0) + n

    def spent(self, peer: str) -> int:
        return self._spent.get(peer, 0)

    def exhaust(self, peer: str) -> None:
        """``peer``'s chain reached its budget: free its slot and refuse it one from now on."""
        self.release(peer)
        self._exhausted[peer] = None
        self._exhausted.move_to_end(peer)
        while len(self._exhausted) > self._remember:
            self._exhausted.popitem(last=False)
