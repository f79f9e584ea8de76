"""Errors of the network layer."""

from __future__ import annotations

from ..errors import EdgenodeError, RemoteError

__all__ = ["NetError", "RequestTimeout", "Unreachable", "RemoteFailure", "BlobMismatch", "NotRunning"]


class NetError(EdgenodeError):
    """Root of network-layer errors."""


class NotRunning(NetError):
    """The transport was used before ``start()`` or after ``stop()``."""


class RequestTimeout(NetError):
    """A request got no answer within its timeout."""


class Unreachable(NetError):
    """A peer could not be dialled, or is not connected and has no known address."""


class RemoteFailure(RemoteError, NetError):
    """The peer answered with an error (no handler for the protocol, handler failed)."""


class BlobMismatch(RemoteError, NetError):
    """A fetched blob's sha256 differs from the name it was asked for."""
