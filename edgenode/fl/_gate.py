"""Who may start a run and whose model updates count (sans-IO: callers pass the time).

:class:`StartGate` checks a start command against the node's ``[fl]`` section
(allowed controllers, expiry, replay by run id, bounds); :class:`TrainerCheck` decides
whose updates count -- in swarm mode (a :class:`~edgenode.security.SwarmGuard`) only
members whose certificate holds the ``trainer`` (or ``admin``) role, each update
gossiped by its own author; in open mode anyone, or only the peer ids of
``[fl] trainers`` when that list is set.  Everything else is refused in the model
topic's validator (not forwarded, counted by reason and, in swarm mode, in the
guard's refusals) and again in the round engine.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from federated import STRATEGIES, BadUpdate, StrategyConfig, decode_update
from federated.models import MODEL_FACTORIES
from federated.rounds import min_authors_for

from ..config import FLSection
from ..errors import LocalError, RemoteError, SignatureError
from ..identity import peer_id_from_public_key, verify
from ..security import Refused, SwarmGuard
from ._messages import MAX_START_TTL_MS, FLStart

__all__ = ["TRAINER_ROLE", "StartRefused", "StartGate", "TrainerCheck", "identity_verify", "min_authors_of"]

TRAINER_ROLE = "trainer"
"""The certificate role a swarm member needs for its model updates to count."""
_SKEW_MS = 30_000


class StartRefused(RemoteError):
    """A start command this node will not run; ``reason`` is a short word for the ack."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def min_authors_of(start: FLStart) -> int:
    """Distinct authors the run's strategy needs to aggregate (robust ones need more than one)."""
    return min_authors_for(StrategyConfig(start.strategy, num_malicious=start.malicious))


class StartGate:
    """Which start commands a node accepts (sans-IO: the caller passes ``now_ms``)."""

    def __init__(self, section: FLSection) -> None:
        self.section = section
        self._seen: dict[str, int] = {}  # run id -> expires_ms

    def seen(self, run_id: str) -> bool:
        return run_id in self._seen

    def admit(self, author_id: str, start: FLStart, now_ms: int) -> None:
        """Accept ``start`` (remember its run id) or raise :class:`StartRefused`."""
        for run_id in [r for r, exp in self._seen.items() if exp + _SKEW_MS < now_ms]:
            del self._seen[run_id]
        sec = self.section
        if not sec.enabled:
            raise StartRefused("disabled")
        if sec.controllers and author_id not in sec.controllers:
            raise StartRefused("forbidden", f"{author_id} may not start runs")
        if start.run_id in self._seen:
            raise StartRefused("replay", start.run_id)
        if start.expires_ms <= now_ms:
            raise StartRefused("expired")
        if start.issued_ms > now_ms + _SKEW_MS or start.expires_ms - start.issued_ms > MAX_START_TTL_MS:
            raise StartRefused("bad-time", "issued in the future or lives too long")
        if start.model not in MODEL_FACTORIES or start.strategy not in STRATEGIES:
            raise StartRefused("unknown", f"model {start.model!r} or strategy {start.strategy!r}")
        if not 1 <= start.rounds <= sec.max_rounds or start.quorum < 1 or start.malicious < 0:
            raise StartRefused("bounds", f"rounds 1..{sec.max_rounds}, quorum >= 1")
        if not 0 < start.round_timeout_s <= 3600:
            raise StartRefused("bounds", "round_timeout_s in (0, 3600]")
        need = min_authors_of(start)
        if start.quorum < need:
            raise StartRefused("bounds", f"{start.strategy} tolerating {start.malicious} needs quorum >= {need}")
        self._seen[start.run_id] = start.expires_ms


def identity_verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """:func:`edgenode.identity.verify` as the boolean verifier :mod:`federated` takes."""
    try:
        verify(public_key, data, signature)
    except SignatureError:
        return False
    return True


class TrainerCheck:
    """Whose model updates count: swarm members with the trainer role, or an open-mode allow-list.

    ``refusal(author)`` returns None for an allowed author, else a :class:`Refused` with its reason.
    """

    def __init__(self, guard: SwarmGuard | None = None, trainers: Collection[str] = ()) -> None:
        self.guard = guard
        self.trainers = frozenset(trainers)

    def refusal(self, author: bytes) -> Refused | None:
        try:
            peer = peer_id_from_public_key(author)
        except LocalError:
            return Refused("bad_certificate", "the update's author is not an Ed25519 key")
        if self.guard is not None:
            try:
                member = self.guard.check_known(peer)
            except Refused as exc:
                return exc
            if not member.has_role(TRAINER_ROLE):
                return Refused("role_not_allowed", f"{peer} lacks the {TRAINER_ROLE} role")
        if self.trainers and peer not in self.trainers:
            return Refused("role_not_allowed", f"{peer} is not in [fl] trainers")
        return None

    def allowed(self, author: bytes) -> bool:
        """The engine's ``authorize`` hook."""
        return self.refusal(author) is None

    def validator(self, model: str, shapes: list[tuple[int, ...]], counters: dict[str, int]) -> Callable[
            [str, bytes], bool]:
        """The model topic's gossip validator: rate, signature, shapes, author == origin, trainer."""
        guard = self.guard

        def validate(sender: str, data: bytes) -> bool:
            if guard is not None:
                now_s = guard.abuse_time_s()
                if not guard.abuse.allow(sender, "gossip", now_s):
                    banned = guard.abuse.is_banned(sender, now_s)
                    return self._refuse(sender, Refused("penalised" if banned else "rate_limited", "fl gossip"),
                                        counters)
            try:
                upd = decode_update(data, verify=identity_verify, model=model, shapes=shapes)
            except BadUpdate as exc:
                counters["validator_rejected"] += 1
                if guard is not None and exc.reason == "signature":
                    guard.offence(sender, "invalid_signature", data)
                return False
            try:
                origin = peer_id_from_public_key(upd.author)
            except LocalError:
                origin = ""
            if origin != sender:
                return self._refuse(sender, Refused("wrong_holder", "an update must be gossiped by its author"),
                                    counters)
            why = self.refusal(upd.author)
            if why is not None:
                return self._refuse(sender, why, counters)
            return True

        return validate

    def _refuse(self, sender: str, exc: Refused, counters: dict[str, int]) -> bool:
        counters["validator_rejected"] += 1
        counters[f"refused_{exc.reason}"] = counters.get(f"refused_{exc.reason}", 0) + 1
        if self.guard is not None:
            self.guard.refuse(sender, exc)
        return False
