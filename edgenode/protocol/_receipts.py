"""Result records for the ledger, and receipt verification on the submitter's side."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ledger import ZERO_HASH, Entry, LedgerError, verify_entry

from .. import wire
from ..errors import EdgenodeError
from ..identity import public_key_from_peer_id
from ._errors import InvalidReceipt
from ._messages import Receipt, TaskSpec

__all__ = [
    "TaskRecord",
    "RESULT_KIND",
    "PAYLOAD_KIND",
    "TaskPayload",
    "VerifiedReceipt",
    "verify_receipt",
    "verify_opened_receipt",
    "spec_hash",
    "result_key",
]

RESULT_KIND = "task_result"
"""Ledger entry kind of a task result."""
PAYLOAD_KIND = "task_payload"
"""Ledger entry kind of a task's plaintext input and output, kept only when the spec asks for it."""


@wire.message("task.record", 1)
@dataclass(frozen=True)
class TaskRecord:
    """The body of a ``task_result`` ledger entry: hashes, never payloads."""

    task_id: str
    spec_hash: str
    submitter: str
    kind: str
    module: str
    input_hash: str
    output_hash: str
    status: str
    exit_code: int
    fuel_used: int


@wire.message("task.payload", 1)
@dataclass(frozen=True)
class TaskPayload:
    """The body of a ``task_payload`` ledger entry: what a spec with ``policy["ledger_payload"] = "1"`` keeps."""

    task_id: str
    input: bytes
    output: bytes


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt that passed :func:`verify_receipt`."""

    executor: str
    receipt: Receipt
    entry: Entry
    record: TaskRecord
    sealed: bytes


def spec_hash(env_body: bytes) -> str:
    return hashlib.sha256(env_body).hexdigest()


def result_key(status: str, output_hash: str) -> str:
    """What redundant executors must agree on."""
    return f"{status}:{output_hash}"


def _bad(why: str) -> InvalidReceipt:
    return InvalidReceipt(f"invalid receipt: {why}")


def verify_receipt(
    sealed: bytes,
    executor: str,
    spec: TaskSpec,
    sealed_spec_body: bytes,
    decrypt: Callable[[bytes], bytes] | None = None,
) -> VerifiedReceipt:
    """Check a sealed receipt from ``executor`` for ``spec``; raise :class:`InvalidReceipt` if anything is off.

    Checks: the envelope signature and that its author is ``executor``; the receipt
    names this task and spec; the output matches its hash; the ledger entry is
    signed by the executor, is a ``task_result`` whose record matches the receipt;
    and the entry links to the previous entry carried with it (or is the genesis).
    """
    try:
        env = wire.open_envelope(sealed)
    except EdgenodeError as exc:
        raise _bad(str(exc)) from exc
    return verify_opened_receipt(env, sealed, executor, spec, sealed_spec_body, decrypt)


def verify_opened_receipt(
    env: wire.Envelope,
    sealed: bytes,
    executor: str,
    spec: TaskSpec,
    sealed_spec_body: bytes,
    decrypt: Callable[[bytes], bytes] | None = None,
) -> VerifiedReceipt:
    """:func:`verify_receipt` for ``sealed`` already opened as ``env`` (signature checked) by the caller.

    ``decrypt`` (for an encrypted task) turns the receipt's output ciphertext into
    the plaintext whose hash the receipt and the ledger record name; the returned
    :class:`VerifiedReceipt` carries the plaintext output.
    """
    rc = env.message
    if not isinstance(rc, Receipt):
        raise _bad(f"expected a receipt, got {wire.kind_of(rc)}")
    if env.author_id != executor:
        raise _bad(f"signed by {env.author_id}, not by the executor {executor}")
    if rc.task_id != spec.task_id or rc.spec_hash != spec_hash(sealed_spec_body):
        raise _bad("it answers another task")
    if decrypt is not None:
        try:
            rc = dataclasses.replace(rc, output=decrypt(rc.output))
        except EdgenodeError as exc:
            raise _bad(f"output does not decrypt: {exc}") from exc
    if hashlib.sha256(rc.output).hexdigest() != rc.output_hash:
        raise _bad("output does not match its hash")
    author = public_key_from_peer_id(executor)
    try:
        entry = Entry.from_bytes(rc.entry)
        verify_entry(entry)
    except LedgerError as exc:
        raise _bad(f"ledger entry: {exc}") from exc
    if entry.author != author:
        raise _bad("ledger entry by another author")
    if entry.kind != RESULT_KIND or entry.body is None:
        raise _bad("ledger entry is not a task result")
    try:
        record = wire.from_bytes(TaskRecord, entry.body)
    except EdgenodeError as exc:
        raise _bad(f"ledger record: {exc}") from exc
    want = (spec.task_id, rc.spec_hash, rc.output_hash, rc.status, rc.fuel_used, spec.module)
    got = (record.task_id, record.spec_hash, record.output_hash, record.status, record.fuel_used, record.module)
    if want != got:
        raise _bad("ledger record does not match the receipt")
    if entry.seq == 1:
        if rc.prev_entry or entry.prev != ZERO_HASH:
            raise _bad("genesis entry with a previous entry")
    else:
        try:
            # No signature check needed: the signed entry names prev's hash, which covers prev's signature.
            prev = Entry.from_bytes(rc.prev_entry)
        except LedgerError as exc:
            raise _bad(f"previous ledger entry: {exc}") from exc
        if prev.author != author or prev.seq + 1 != entry.seq or prev.hash != entry.prev:
            raise _bad("ledger entry does not link to the previous entry")
        if prev.timestamp_ms > entry.timestamp_ms:
            raise _bad("ledger time runs backwards")
    return VerifiedReceipt(executor, rc, entry, record, sealed)
