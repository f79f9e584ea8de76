"""edgenode: a peer of a decentralized edge-intelligence swarm."""

from ._version import __version__

__all__ = ["__version__"]
