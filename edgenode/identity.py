"""The node's one identity: an Ed25519 key (pynacl).

The same key is the libp2p host key (so :attr:`Identity.peer_id` is the libp2p
peer id of the key) and the author of the node's ledger entries.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from ._files import fsync_dir
from .errors import LocalError, SignatureError

__all__ = ["Identity", "peer_id_from_public_key", "public_key_from_peer_id", "verify", "KEY_FILE"]

KEY_FILE = "node.key"
"""Name of the key file inside a node's home directory."""

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# libp2p PublicKey protobuf for Ed25519: field 1 (Type) = 1, field 2 (Data) = 32 bytes.
_PB_PREFIX = b"\x08\x01\x12\x20"
# identity multihash (code 0x00) of the 36-byte protobuf
_MH_PREFIX = b"\x00\x24"
_KEY_MAGIC = b"edgenode-ed25519-seed-v1\n"


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        i = _B58.find(ch)
        if i < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\x00" * pad + body


@functools.lru_cache(maxsize=4096)  # base58 in Python is slow, and every message names its author
def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id (base58, ``12D3KooW...``) of a raw Ed25519 public key."""
    if len(public_key) != 32:
        raise LocalError("an Ed25519 public key has 32 bytes")
    return _b58encode(_MH_PREFIX + _PB_PREFIX + public_key)


@functools.lru_cache(maxsize=4096)
def public_key_from_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_from_public_key`; LocalError if not an Ed25519 peer id."""
    try:
        raw = _b58decode(peer_id)
    except ValueError as exc:
        raise LocalError(f"not a peer id: {peer_id!r}") from exc
    prefix = _MH_PREFIX + _PB_PREFIX
    if len(raw) != len(prefix) + 32 or not raw.startswith(prefix):
        raise LocalError(f"not an Ed25519 peer id: {peer_id!r}")
    return raw[len(prefix) :]


def verify(public_key: bytes, data: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature; raise :class:`SignatureError` if it fails."""
    try:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise SignatureError("signature does not verify") from exc


@dataclass(frozen=True)
class Identity:
    """An Ed25519 signing key with its derived public key and peer id."""

    seed: bytes
    """The 32-byte private seed."""

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise LocalError("an Ed25519 seed has 32 bytes")

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def _key(self) -> nacl.signing.SigningKey:
        key = self.__dict__.get("_cached_key")
        if key is None:
            key = nacl.signing.SigningKey(self.seed)
            object.__setattr__(self, "_cached_key", key)
        return key

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return bytes(self._key.verify_key)

    @property
    def peer_id(self) -> str:
        """The libp2p peer id of this key."""
        return peer_id_from_public_key(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """A 64-byte detached Ed25519 signature of ``data``."""
        return self._key.sign(data).signature

    def save(self, path: Path, *, force: bool = False) -> None:
        """Write the key to ``path`` with mode 0600; refuse to overwrite unless ``force``.

        The key is never written through a symlink and never truncated in place: a new
        file (mode 0600 from its creation, ``O_EXCL``, no symlink followed) is written and
        fsynced, then linked (or, with ``force``, renamed) to ``path``, and the directory
        is fsynced.  A power cut leaves either the old key or the new one.
        """
        path = Path(path)
        if not force and os.path.lexists(path):
            raise LocalError(f"{path} exists; use --force to replace the node key")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise LocalError(f"cannot write {path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(_KEY_MAGIC + self.seed.hex().encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            if force:
                os.replace(tmp, path)  # replaces a symlink itself, never its target
            else:
                os.link(tmp, path)  # atomic, and fails if anything appeared at path meanwhile
        except FileExistsError as exc:
            raise LocalError(f"{path} exists; use --force to replace the node key") from exc
        except OSError as exc:
            raise LocalError(f"cannot write {path}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key written by :meth:`save`."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise LocalError(f"no node key at {path}; run `edgenode init` first") from exc
        except OSError as exc:
            raise LocalError(f"cannot read {path}: {exc.strerror}") from exc
        if not raw.startswith(_KEY_MAGIC):
            raise LocalError(f"{path} is not an edgenode key file")
        try:
            seed = bytes.fromhex(raw[len(_KEY_MAGIC) :].decode().strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise LocalError(f"{path} is corrupt") from exc
        if len(seed) != 32:
            raise LocalError(f"{path} is corrupt")
        return cls(seed)

    def __repr__(self) -> str:
        return f"Identity(peer_id={self.peer_id!r})"
