"""End-to-end payload encryption between a submitter and an executor.

Inputs and outputs travel in a NaCl ``Box`` between the two parties' Ed25519
keys converted to Curve25519, so only the submitter and the executor can read
them; relays and other peers see ciphertext.  The ledger keeps hashes.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public
import nacl.signing

from ..identity import Identity
from ._errors import Refused

__all__ = ["encrypt_for", "decrypt_from"]


def _box(me: Identity, peer_public_key: bytes) -> nacl.public.Box:
    try:
        mine = nacl.signing.SigningKey(me.seed).to_curve25519_private_key()
        theirs = nacl.signing.VerifyKey(peer_public_key).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise Refused("bad_ciphertext", "peer key cannot be used for encryption") from exc
    return nacl.public.Box(mine, theirs)


def encrypt_for(me: Identity, peer_public_key: bytes, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only ``me`` and the peer can read it (random nonce inside)."""
    return bytes(_box(me, peer_public_key).encrypt(plaintext))


def decrypt_from(me: Identity, peer_public_key: bytes, ciphertext: bytes) -> bytes:
    """Decrypt what the peer encrypted for ``me``; Refused("bad_ciphertext") if tampered."""
    try:
        return bytes(_box(me, peer_public_key).decrypt(ciphertext))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise Refused("bad_ciphertext", "ciphertext does not authenticate") from exc
