"""Swarm mode on a peer: membership handshake, gated gossip and requests, revocations, evidence.

:class:`SwarmGuard` is the thin adapter between the sans-IO cores
(:class:`MembershipView`, :class:`AbuseGuard`, :func:`decide`) and a
:class:`~edgenode.net.Transport`.  Right after a peer JOINs, both sides
exchange sealed :class:`MemberHello` messages on :data:`MEMBER_PROTOCOL`; a
peer without a valid, unexpired, unrevoked certificate of this swarm is
refused (the reason is counted and logged) and disconnected.  Every signed
gossip message and every request is then checked against the author's
remembered certificate.  Revocations spread on :data:`REVOCATION_TOPIC` and
apply at once; a peer that earns a ban is disconnected and the evidence is
gossiped on :data:`EVIDENCE_TOPIC`.  Time comes from the injected :class:`~edgenode.clock.Clock`: wall time for
certificates and evidence, monotonic time for rate limits and bans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..clock import Clock
from ..errors import DecodeError, EdgenodeError, LocalError, SignatureError
from ..identity import Identity, public_key_from_peer_id
from ..net import BlobStore, Handler, NetError, PeerEventKind, RemoteFailure, Transport, Validator, blob_handler
from ..tasksets import Spawner, TaskSet
from ._abuse import AbuseGuard
from ._errors import PolicyError, Refused
from ._membership import DEFAULT_CERT_SKEW_MS, Member, MembershipCert, MembershipView, Revocation
from ._policy import LocalPolicy

__all__ = [
    "MEMBER_PROTOCOL",
    "MEMBER_TOPIC",
    "REVOCATION_TOPIC",
    "EVIDENCE_TOPIC",
    "MemberHello",
    "MemberRefused",
    "Evidence",
    "SwarmGuard",
]

MEMBER_PROTOCOL = "/edgenode/member/1"
"""Direct stream: request a sealed :class:`MemberHello`, answer a sealed MemberHello or :class:`MemberRefused`."""
MEMBER_TOPIC = "edgenode/members/1"
"""Sealed :class:`MemberHello` of every member, so peers known only through relays are known too."""
REVOCATION_TOPIC = "edgenode/revocations/1"
"""The admin's sealed revocations (anyone may relay them; the admin's signature is what counts)."""
EVIDENCE_TOPIC = "edgenode/evidence/1"
"""Sealed :class:`Evidence` against a peer that was penalised into a ban."""

HANDSHAKE_TIMEOUT_S = 5.0
MAX_EVIDENCE = 256
"""Evidence records kept by default (oldest dropped first)."""
MAX_PROOF_BYTES = 65_536
"""Largest proof an evidence record may carry (this peer cuts its own to this; longer ones are refused)."""
DROP_GRACE_S = 0.2
HANDSHAKE_RETRIES_S = (0.1, 0.3, 1.0)
"""Pauses before asking again when the peer could not answer a hello yet (two nodes that
connect while starting ask each other before either serves the membership protocol)."""
"""A refused peer is disconnected this long after the refusal, so the reason reaches it first."""

log = logging.getLogger("edgenode.security")


@wire.message("swarm.hello", 1)
@dataclass(frozen=True)
class MemberHello:
    """A peer presents its certificate (sealed by the peer, so the holder's key signs it too)."""

    cert: bytes
    """The sender's sealed :class:`MembershipCert`; empty when it has none."""


@wire.message("swarm.refused", 1)
@dataclass(frozen=True)
class MemberRefused:
    """The answer to a hello that did not check out."""

    reason: str
    """One of :data:`edgenode.security.REASONS`."""
    detail: str


@wire.message("swarm.evidence", 1)
@dataclass(frozen=True)
class Evidence:
    """Why the reporter banned ``offender``: the offence and the bytes that prove it."""

    offender: bytes
    """The offender's public key."""
    offence: str
    """``invalid_signature``, ``forged_receipt``, ``equivocation``, ``malformed``..."""
    proof: bytes
    """The offending bytes: the forged receipt envelope, an equivocation proof, the bad message."""
    observed_ms: int


class SwarmGuard:
    """Membership, abuse limits and capability policy for one peer (node or submitter)."""

    def __init__(
        self,
        identity: Identity,
        cert: bytes,
        clock: Clock,
        *,
        swarm: bytes | None = None,
        abuse: AbuseGuard | None = None,
        policy: LocalPolicy | None = None,
        revocations: Sequence[bytes] = (),
        on_refused: Callable[[str], None] | None = None,
        max_evidence: int = MAX_EVIDENCE,
        cert_skew_ms: int = DEFAULT_CERT_SKEW_MS,
    ) -> None:
        try:
            _env, own = wire.open_as(MembershipCert, cert)
        except (DecodeError, SignatureError) as exc:
            raise PolicyError(f"the swarm certificate does not verify: {exc}") from exc
        if swarm is not None and own.swarm != swarm:
            raise PolicyError("the certificate is for another swarm than the one configured")
        self.identity = identity
        self.cert = cert
        self.clock = clock
        self.now_ms = clock.now_ms
        """Wall time: certificates' validity and evidence timestamps."""
        self.view = MembershipView(own.swarm, skew_ms=cert_skew_ms)
        self.abuse = abuse or AbuseGuard()
        self.policy = policy or LocalPolicy()
        self.on_refused = on_refused
        self.refusals: Counter[str] = Counter()
        """Refusals by reason (connections, gossip, requests and tasks)."""
        self.evidence: deque[Evidence] = deque(maxlen=max_evidence)
        """Evidence received from other members (and published by this one); the newest ``max_evidence``."""
        for rev in revocations:
            self.view.add_revocation(rev)
        self._revocations = list(revocations)
        try:
            self.me = self.view.check(identity.public_key, cert, clock.now_ms())
        except Refused as exc:
            raise PolicyError(f"this peer's own certificate is unusable: {exc}") from exc
        self.view.remember(identity.public_key, cert)  # our own messages come back through validators
        self._members: dict[str, Member] = {}
        self._handshakes: dict[str, asyncio.Future[Member]] = {}
        self._transport: Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks = TaskSet(log=log)
        """Handshakes, drops and publications (what :meth:`settle` waits for)."""
        self._bg = TaskSet(log=log)
        """Topic and peer followers, for the guard's life."""

    @property
    def swarm_id(self) -> str:
        return self.view.swarm_id

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, transport: Transport, spawn: Spawner | None = None) -> None:
        """Serve the handshake, gate the swarm topics and follow peers (before any connection).
        ``spawn``: the runtime's task group, where the guard's tasks then run."""
        if self._transport is not None:
            return
        if spawn is not None:
            self._tasks, self._bg = TaskSet(spawn, log=log), TaskSet(spawn, log=log)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        transport.serve(MEMBER_PROTOCOL, self._serve_hello)
        transport.set_validator(MEMBER_TOPIC, self._valid_hello)
        transport.set_validator(REVOCATION_TOPIC, self._valid_revocation)
        transport.set_validator(EVIDENCE_TOPIC, self.gate(self._valid_evidence))
        for topic in (MEMBER_TOPIC, REVOCATION_TOPIC, EVIDENCE_TOPIC):
            self._bg.spawn(self._drain(transport, topic))
        self._bg.spawn(self._follow_peers(transport))

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout`` s) for the handshakes, drops and publications in flight."""
        async with asyncio.timeout(timeout):
            await self._tasks.settle()

    async def stop(self) -> None:
        await self._bg.cancel()
        await self._tasks.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the guard's loop (callable from a transport's validator thread too)."""
        if self._loop is None:
            coro.close()
            return
        self._tasks.spawn(coro, loop=self._loop)

    async def _drain(self, transport: Transport, topic: str) -> None:
        """Stay subscribed, so this peer joins the topic's mesh and relays it; the validators do the work."""
        sub = transport.subscribe(topic)
        try:
            async for _msg in sub:
                pass
        finally:
            with contextlib.suppress(NetError):
                await sub.aclose()  # type: ignore[attr-defined]

    async def _follow_peers(self, transport: Transport) -> None:
        events = transport.peer_events()
        async for ev in events:
            if ev.kind is PeerEventKind.JOIN:
                self._spawn(self._admit(ev.peer))
            else:
                self._members.pop(ev.peer, None)

    # -- refusals and offences ----------------------------------------------------------
    def refuse(self, peer: str, exc: Refused) -> Refused:
        """Count and log a refusal; return it for raising."""
        self.refusals[exc.reason] += 1
        log.info("refused peer", extra={"peer": peer, "reason": exc.reason, "detail": exc.detail})
        if self.on_refused is not None:
            self.on_refused(exc.reason)
        return exc

    def abuse_time_s(self) -> float:
        """Monotonic seconds: what rate limits and bans are measured in."""
        return self.clock.monotonic_ms() / 1000.0

    def offence(self, peer: str, offence: str, proof: bytes = b"") -> bool:
        """Penalise ``peer``; when that bans it, disconnect it and gossip the evidence.  True if banned."""
        banned = self.abuse.penalise(peer, offence, self.abuse_time_s())
        log.info("peer offence", extra={"peer": peer, "offence": offence, "banned": banned})
        if banned:
            self._members.pop(peer, None)
            self._spawn(self._drop_later(peer))
            try:
                ev = Evidence(public_key_from_peer_id(peer), offence, proof[:MAX_PROOF_BYTES], self.now_ms())
            except LocalError:
                return True
            self.evidence.append(ev)
            self._spawn(self._publish(EVIDENCE_TOPIC, wire.seal(self.identity, ev)))
        return banned

    async def drop(self, peer: str) -> None:
        """Disconnect ``peer`` (quietly if it already left or the transport cannot)."""
        if self._transport is not None:
            try:
                await self._transport.disconnect(peer)
            except NetError as exc:
                log.debug("disconnect failed", extra={"peer": peer, "error": str(exc)})

    async def _drop_later(self, peer: str) -> None:
        await asyncio.sleep(DROP_GRACE_S)
        await self.drop(peer)

    async def _publish(self, topic: str, data: bytes) -> None:
        if self._transport is not None:
            try:
                await self._transport.publish(topic, data)
            except NetError as exc:
                log.debug("publish failed", extra={"topic": topic, "error": str(exc)})

    # -- membership ---------------------------------------------------------------------
    def _key(self, peer: str) -> bytes:
        try:
            return public_key_from_peer_id(peer)
        except LocalError as exc:
            raise Refused("bad_certificate", f"{peer!r} is not an Ed25519 peer id") from exc

    def check_known(self, peer: str) -> Member:
        """The member ``peer`` if its remembered certificate holds now; else Refused (not counted)."""
        now = self.now_ms()
        if self.abuse.is_banned(peer, self.abuse_time_s()):
            raise Refused("penalised", "banned for misbehaviour")
        member = self.view.check_known(self._key(peer), now)
        self._members[peer] = member
        return member

    async def require(self, peer: str) -> Member:
        """The member ``peer``: its remembered certificate, or a handshake now; Refused otherwise."""
        try:
            return self.check_known(peer)
        except Refused as exc:
            if exc.reason != "no_certificate":
                raise
        fut = self._handshakes.get(peer)
        if fut is None:
            fut = asyncio.ensure_future(self._handshake(peer))
            self._handshakes[peer] = fut
            fut.add_done_callback(lambda _f: self._handshakes.pop(peer, None))
        return await asyncio.shield(fut)

    def _hello(self) -> bytes:
        return wire.seal(self.identity, MemberHello(self.cert))

    async def _handshake(self, peer: str) -> Member:
        if self._transport is None:
            raise LocalError("the swarm guard is not started")
        for pause in (*HANDSHAKE_RETRIES_S, None):
            try:
                resp = await self._transport.request(
                    peer, MEMBER_PROTOCOL, self._hello(), timeout=HANDSHAKE_TIMEOUT_S
                )
                break
            except RemoteFailure as exc:  # it answered, but could not serve a hello (yet)
                if pause is None:
                    raise Refused("no_certificate", f"no membership answer: {exc}") from exc
                await asyncio.sleep(pause)
            except NetError as exc:
                raise Refused("no_certificate", f"no membership answer: {exc}") from exc
        return self._accept_hello(peer, resp)

    def _accept_hello(self, peer: str, data: bytes) -> Member:
        """Check a sealed hello (or refusal) from ``peer`` and remember its certificate."""
        try:
            env = wire.open_envelope(data)
        except (DecodeError, SignatureError) as exc:
            raise Refused("bad_certificate", f"hello does not verify: {exc}") from exc
        key = self._key(peer)
        if env.author != key:
            raise Refused("wrong_holder", "hello signed by another key")
        msg = env.message
        if isinstance(msg, MemberRefused):
            raise Refused("no_certificate", f"the peer refused us ({msg.reason}: {msg.detail})")
        if not isinstance(msg, MemberHello):
            raise Refused("bad_certificate", f"expected a hello, got {wire.kind_of(msg)}")
        member = self.view.check(key, msg.cert, self.now_ms())
        self.view.remember(key, msg.cert)
        self._members[peer] = member
        return member

    async def _admit(self, peer: str) -> None:
        """On JOIN: handshake; refuse and disconnect a peer that is not a member."""
        try:
            if self.abuse.is_banned(peer, self.abuse_time_s()):
                raise Refused("penalised", "banned for misbehaviour")
            await self.require(peer)
        except Refused as exc:
            self.refuse(peer, exc)
            await asyncio.sleep(DROP_GRACE_S)
            await self.drop(peer)

    async def _serve_hello(self, sender: str, data: bytes) -> bytes:
        """Answer a hello with ours; a sealed :class:`Revocation` (anyone may deliver it) is applied and spread."""
        try:
            if not self.abuse.allow(sender, "request", self.abuse_time_s()):
                raise Refused("rate_limited", "too many requests")
            try:
                env = wire.open_envelope(data)
            except (DecodeError, SignatureError) as exc:
                raise Refused("bad_certificate", f"hello does not verify: {exc}") from exc
            if isinstance(env.message, Revocation):
                await self.revoke(data)
                return self._hello()
            self._accept_hello(sender, data)
        except Refused as exc:
            self.refuse(sender, exc)
            return wire.seal(self.identity, MemberRefused(exc.reason, exc.detail))
        return self._hello()

    def members(self) -> list[str]:
        """Peers whose certificates checked out (and hold now)."""
        out = []
        for peer in list(self._members):
            with contextlib.suppress(Refused):
                out.append(self.check_known(peer).peer_id)
        return out

    async def announce(self) -> None:
        """Gossip this peer's hello, so members reached only through relays learn its certificate."""
        await self._publish(MEMBER_TOPIC, self._hello())

    # -- gossip -------------------------------------------------------------------------
    def gate(self, inner: Validator) -> Validator:
        """A validator that also checks the sender's rate, the signature and the author's membership."""

        def validator(sender: str, data: bytes) -> bool:
            now_s = self.abuse_time_s()
            if not self.abuse.allow(sender, "gossip", now_s):
                reason = "penalised" if self.abuse.is_banned(sender, now_s) else "rate_limited"
                self.refuse(sender, Refused(reason, "gossip"))
                return False
            try:
                env = wire.open_envelope(data)
            except SignatureError:
                self.refuse(sender, Refused("bad_certificate", "gossip with an invalid signature"))
                self.offence(sender, "invalid_signature", data)
                return False
            except DecodeError:
                self.refuse(sender, Refused("bad_certificate", "undecodable gossip"))
                self.offence(sender, "malformed", data)
                return False
            try:
                self.check_known(env.author_id)
            except Refused as exc:
                self.refuse(sender, exc)
                return False
            return inner(sender, data)

        return validator

    def _valid_hello(self, sender: str, data: bytes) -> bool:
        try:
            self._accept_hello(sender, data)
        except Refused as exc:
            self.refuse(sender, exc)
            return False
        return True

    def _valid_revocation(self, sender: str, data: bytes) -> bool:
        try:
            self.apply_revocation(data)
        except Refused as exc:
            self.refuse(sender, exc)
            return False
        return True

    def _valid_evidence(self, sender: str, data: bytes) -> bool:
        try:
            _env, ev = wire.open_as(Evidence, data)
        except EdgenodeError:
            return False
        if len(ev.proof) > MAX_PROOF_BYTES:
            self.offence(sender, "malformed", data[:MAX_PROOF_BYTES])
            return False
        self.evidence.append(ev)
        if ev.offence == "equivocation":
            from ledger import EquivocationProof, LedgerError

            try:
                proof = EquivocationProof.from_bytes(ev.proof)
            except LedgerError:
                self.offence(sender, "malformed", data)
                return False
            if proof.author == ev.offender:  # self-proving: ban the forker here too
                self.offence(_peer_of(ev.offender), "equivocation", ev.proof)
        return True

    # -- revocations --------------------------------------------------------------------
    def apply_revocation(self, sealed: bytes) -> None:
        """Record an admin-signed revocation and drop the revoked peer at once (Refused if not the admin's)."""
        rev = self.view.add_revocation(sealed)
        if sealed not in self._revocations:
            self._revocations.append(sealed)
        peer = _peer_of(rev.member)
        if peer in self._members:
            self._members.pop(peer, None)
            self.refuse(peer, Refused("revoked", f"certificate serial {rev.serial} revoked"))
            self._spawn(self._drop_later(peer))

    async def revoke(self, sealed: bytes) -> None:
        """Apply a revocation here and gossip it to the swarm."""
        self.apply_revocation(sealed)
        await self._publish(REVOCATION_TOPIC, sealed)

    async def spread_revocations(self) -> None:
        """Gossip every revocation this peer holds (at start, so late joiners learn them)."""
        for sealed in list(self._revocations):
            await self._publish(REVOCATION_TOPIC, sealed)

    # -- requests -----------------------------------------------------------------------
    async def admit_request(self, sender: str, kind: str) -> Member:
        """Membership and the ``kind`` rate limit for one request from ``sender`` (Refused, counted)."""
        try:
            if not self.abuse.allow(sender, kind, self.abuse_time_s()):
                banned = self.abuse.is_banned(sender, self.abuse_time_s())
                raise Refused("penalised" if banned else "rate_limited", f"{kind} requests")
            return await self.require(sender)
        except Refused as exc:
            raise self.refuse(sender, exc) from None

    def guard_handler(self, kind: str, handler: Handler) -> Handler:
        """``handler`` behind :meth:`admit_request` (a refusal fails the request with its reason)."""

        async def guarded(sender: str, data: bytes) -> bytes:
            await self.admit_request(sender, kind)
            return await handler(sender, data)

        return guarded

    def guard_blobs(self, store: BlobStore) -> Handler:
        """The blob handler (as :meth:`Transport.serve_blobs` serves it) behind :meth:`admit_request`."""

        return self.guard_handler("blob", blob_handler(store))


def _peer_of(key: bytes) -> str:
    from ..identity import peer_id_from_public_key

    return peer_id_from_public_key(key)
