"""Signed, hash-chained, per-author ledger (in the manner of SSB feeds and Holochain source chains).

Knows nothing of ``edgenode``: it takes a signer (``.public_key``, ``.sign``) as an argument.
"""

from ._chain import (
    MAX_BATCH_ENTRIES,
    EquivocationProof,
    decode_entries,
    encode_entries,
    find_equivocation,
    verify_chain,
    verify_extension,
    verify_link,
)
from ._entry import (
    ENTRY_VERSION,
    MAX_BODY_BYTES,
    MAX_KIND_BYTES,
    SIGN_DOMAIN,
    ZERO_HASH,
    Entry,
    Signer,
    build_entry,
    signature_ok,
    verify_body,
    verify_entry,
)
from ._errors import (
    CHAIN_REASONS,
    ChainError,
    CorruptRowError,
    EntryDecodeError,
    InvalidProofError,
    LedgerError,
    LedgerLocalError,
    LedgerRemoteError,
)
from ._ledger import Ledger
from ._sqlite import APPLICATION_ID, LEDGER_DB, SCHEMA_VERSION, SqliteLedgerStore
from ._store import LedgerStore, MemoryLedgerStore
from ._sync import ApplyResult, SyncPlan, SyncRange, apply_entries, plan_sync, receive_entries
from ._verify import AuthorStatus, VerifyReport, verify_store
from ._witness import WitnessTable, entry_size, take_within

__all__ = [
    "APPLICATION_ID",
    "CHAIN_REASONS",
    "ENTRY_VERSION",
    "LEDGER_DB",
    "MAX_BATCH_ENTRIES",
    "MAX_BODY_BYTES",
    "MAX_KIND_BYTES",
    "SCHEMA_VERSION",
    "SIGN_DOMAIN",
    "ZERO_HASH",
    "ApplyResult",
    "AuthorStatus",
    "ChainError",
    "CorruptRowError",
    "Entry",
    "EntryDecodeError",
    "EquivocationProof",
    "InvalidProofError",
    "Ledger",
    "LedgerError",
    "LedgerLocalError",
    "LedgerRemoteError",
    "LedgerStore",
    "MemoryLedgerStore",
    "Signer",
    "SqliteLedgerStore",
    "SyncPlan",
    "SyncRange",
    "VerifyReport",
    "WitnessTable",
    "apply_entries",
    "build_entry",
    "decode_entries",
    "encode_entries",
    "entry_size",
    "find_equivocation",
    "plan_sync",
    "receive_entries",
    "signature_ok",
    "take_within",
    "verify_body",
    "verify_chain",
    "verify_entry",
    "verify_extension",
    "verify_link",
    "verify_store",
]
