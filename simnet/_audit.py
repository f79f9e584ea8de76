"""Reading back one node's own ledger at the end of a run (both swarm backends)."""

from __future__ import annotations

from dataclasses import dataclass

from edgenode import wire
from edgenode.errors import EdgenodeError
from edgenode.protocol import RESULT_KIND, TaskRecord
from ledger import ChainError, LedgerStore, verify_chain

__all__ = ["ChainAudit", "audit_own_chain"]


@dataclass(frozen=True)
class ChainAudit:
    """What a node's own chain holds and whether it verifies."""

    height: int
    verified: bool
    detail: str
    """Why it does not verify (empty when it does)."""
    task_ids: tuple[str, ...]
    """Task ids of the ``task_result`` entries, in chain order (undecodable bodies skipped)."""


async def audit_own_chain(store: LedgerStore, author: bytes) -> ChainAudit:
    """Verify ``author``'s chain in ``store`` from seq 1 to its head and list its task results."""
    head = await store.head(author)
    height = 0 if head is None else head.seq
    entries = await store.range(author, 1, height) if height else []
    verified, detail = True, ""
    try:
        verify_chain(entries)
        if len(entries) != height:
            verified, detail = False, f"{len(entries)} entries for height {height}"
    except ChainError as exc:
        verified, detail = False, str(exc)
    tids = []
    for e in entries:
        if e.kind == RESULT_KIND and e.body is not None:
            try:
                tids.append(wire.from_bytes(TaskRecord, e.body).task_id)
            except EdgenodeError:
                continue
    return ChainAudit(height, verified, detail, tuple(tids))
