"""Signed envelopes: a message, its author's public key and an Ed25519 signature.

The signature covers a domain tag plus the canonical bytes of
``[version, author, body]``, where ``body`` is the message's canonical bytes.

Opening verifies before it decodes: only the envelope's outer list of four
values is parsed (at most :data:`_OUTER_ITEMS` values, one level deep), the
signature is checked over the raw body bytes, and only then is the body decoded
into a message.  An unsigned or forged frame costs one signature check and one
copy of its bytes, never a decode.

A small envelope opened again (a gossip message is opened by the topic validator and
then by its handler, and in swarm mode by the guard too) is not verified again: the
exact bytes of the last few hundred small envelopes that verified are remembered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..errors import DecodeError
from ..identity import peer_id_from_public_key, verify
from . import _codec, _message

__all__ = ["Signer", "Envelope", "seal", "open_envelope", "open_as", "ENVELOPE_VERSION"]

ENVELOPE_VERSION = 1
_DOMAIN = b"edgenode/envelope/v1\x00"
_OUTER_ITEMS = 5
"""The envelope's outer list and its four values: all the decoder may build before the signature checks."""

M = TypeVar("M")

_VERIFIED_MAX = 512
"""How many verified envelopes are remembered (by their exact bytes)."""
_VERIFIED_MAX_BYTES = 2048
"""Only envelopes up to this size are remembered (gossip: adverts, heads, offers)."""
_verified: OrderedDict[bytes, None] = OrderedDict()
_verified_lock = threading.Lock()  # validators run in the network thread, handlers on the event loop


def _verify_once(data: bytes, version: int, author: bytes, body: bytes, sig: bytes) -> None:
    """Check the envelope's signature unless these exact envelope bytes verified recently."""
    small = len(data) <= _VERIFIED_MAX_BYTES
    if small:
        key = bytes(data)
        with _verified_lock:
            if key in _verified:
                _verified.move_to_end(key)
                return
    verify(author, _signed_bytes(version, author, body), sig)
    if small:
        with _verified_lock:
            _verified[key] = None
            if len(_verified) > _VERIFIED_MAX:
                _verified.popitem(last=False)


class Signer(Protocol):
    """Anything that can sign: :class:`edgenode.identity.Identity` is one."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


def _signed_bytes(version: int, author: bytes, body: bytes) -> bytes:
    """``_DOMAIN + encode([version, author, body])``, copying ``body`` once."""
    head = _codec.encode([version, author, b""])[:-2]  # drop the empty body's tag and length
    return b"".join((_DOMAIN, head, _codec.bytes_header(len(body)), body))


@dataclass(frozen=True)
class Envelope:
    """A verified envelope: the author's key, the decoded message and its raw bytes."""

    author: bytes
    """Raw 32-byte Ed25519 public key of the signer."""
    message: Any
    """The decoded, typed message."""
    body: bytes
    """The message's canonical bytes (what was signed)."""
    signature: bytes

    @property
    def author_id(self) -> str:
        """The author's peer id."""
        return peer_id_from_public_key(self.author)


def seal(signer: Signer, msg: object) -> bytes:
    """Sign ``msg`` and return the envelope's canonical bytes."""
    body = _message.to_bytes(msg)
    author = signer.public_key
    sig = signer.sign(_signed_bytes(ENVELOPE_VERSION, author, body))
    return _codec.encode([ENVELOPE_VERSION, author, body, sig])


def open_envelope(data: bytes) -> Envelope:
    """Verify and decode an envelope; DecodeError or SignatureError on bad input.

    The signature is checked over the raw body before the body is decoded.
    """
    v = _codec.decode(data, max_items=_OUTER_ITEMS, max_depth=1)
    if not (isinstance(v, list) and len(v) == 4):
        raise DecodeError("not an envelope")
    version, author, body, sig = v
    if not isinstance(version, int) or version != ENVELOPE_VERSION:
        raise DecodeError(f"unsupported envelope version {version!r}")
    if not (isinstance(author, bytes) and len(author) == 32):
        raise DecodeError("envelope author is not a 32-byte key")
    if not (isinstance(body, bytes) and isinstance(sig, bytes) and len(sig) == 64):
        raise DecodeError("malformed envelope body or signature")
    _verify_once(data, version, author, body, sig)
    msg = _message.decode_any(body)
    return Envelope(author=author, message=msg, body=body, signature=sig)


def open_as(cls: type[M], data: bytes) -> tuple[Envelope, M]:
    """Open an envelope whose message must be of type ``cls``."""
    env = open_envelope(data)
    if not isinstance(env.message, cls):
        raise DecodeError(f"expected {getattr(cls, 'WIRE_KIND', cls.__name__)}, got {_message.kind_of(env.message)}")
    return env, env.message
