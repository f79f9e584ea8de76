"""Typed messages with canonical bytes, and signed envelopes.

Everything that crosses the wire is a registered message, sealed in a signed
envelope.  Decoding is total: bytes either decode or raise
:class:`edgenode.errors.DecodeError` (a :class:`~edgenode.errors.RemoteError`).
"""

from ._codec import MAX_DEPTH, MAX_ITEMS, MAX_SIZE, Value, decode, encode
from ._envelope import ENVELOPE_VERSION, Envelope, Signer, open_as, open_envelope, seal
from ._message import Message, decode_any, from_bytes, kind_of, message, registry, to_bytes

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_SIZE",
    "Envelope",
    "Message",
    "Signer",
    "Value",
    "decode",
    "decode_any",
    "encode",
    "from_bytes",
    "kind_of",
    "message",
    "open_as",
    "open_envelope",
    "registry",
    "seal",
    "to_bytes",
]
