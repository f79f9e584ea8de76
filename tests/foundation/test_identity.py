"""Identity: the peer id is py-libp2p's own derivation of the same key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from edgenode.errors import LocalError, SignatureError
from edgenode.identity import Identity, peer_id_from_public_key, public_key_from_peer_id, verify


@given(st.binary(min_size=32, max_size=32))
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    ident = Identity(seed)
    kp = create_new_key_pair(seed)
    assert kp.public_key.to_bytes() == ident.public_key
    assert ID.from_pubkey(kp.public_key).to_base58() == ident.peer_id
    assert public_key_from_peer_id(ident.peer_id) == ident.public_key


def test_sign_and_verify() -> None:
    ident = Identity.generate()
    sig = ident.sign(b"hello")
    verify(ident.public_key, b"hello", sig)
    with pytest.raises(SignatureError):
        verify(ident.public_key, b"hellO", sig)
    with pytest.raises(SignatureError):
        verify(Identity.generate().public_key, b"hello", sig)


def test_save_load_mode_and_no_overwrite(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "node.key"
    ident.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Identity.load(path) == ident
    with pytest.raises(LocalError, match="--force"):
        Identity.generate().save(path)
    assert Identity.load(path) == ident
    other = Identity.generate()
    other.save(path, force=True)
    assert Identity.load(path) == other


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"edgenode-ed25519-seed-v1\nzz\n", b"edgenode-ed25519-seed-v1\nabcd\n"]
)
def test_load_rejects_corrupt_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    with pytest.raises(LocalError):
        Identity.load(path)


def test_bad_peer_ids_and_keys() -> None:
    with pytest.raises(LocalError):
        public_key_from_peer_id("QmNotAnEd25519Key")
    with pytest.raises(LocalError):
        public_key_from_peer_id("0OIl")
    with pytest.raises(LocalError):
        peer_id_from_public_key(b"short")
