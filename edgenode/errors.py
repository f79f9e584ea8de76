"""The exception root of the ``edgenode`` package.

Local faults (misuse of the API, bad local input such as a missing file) and
remote faults (bytes from a peer that do not decode, a forged signature) are
split, so that callers can penalise peers for remote faults only.
"""

from __future__ import annotations

__all__ = ["EdgenodeError", "LocalError", "RemoteError", "DecodeError", "SignatureError"]


class EdgenodeError(Exception):
    """Root of every error raised by edgenode on purpose."""


class LocalError(EdgenodeError):
    """A fault of this process or its user: bad arguments, bad local files."""


class RemoteError(EdgenodeError):
    """A fault of a peer: malformed, forged or otherwise invalid remote input."""


class DecodeError(RemoteError):
    """Bytes that are not a valid encoding of any known message."""


class SignatureError(RemoteError):
    """A signature that does not verify against its claimed author."""
