"""The launcher's sans-IO progress book, the FL config section, and the FL wire messages' decoders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode import wire
from edgenode.config import from_table
from edgenode.errors import LocalError, RemoteError
from edgenode.fl import (
    FLAck,
    FLProgress,
    FLSection,
    FLStart,
    ProgressBook,
    make_loader,
    make_start,
    partition_of,
    train_config,
)
from edgenode.identity import Identity
from federated import ArrayLoader, DigitsPartition, load_digits_split

RUN = "00ff00ff00ff00ff"


def _p(peer: str, rnd: int, acc: float, sha: str = "a" * 64, run: str = RUN) -> FLProgress:
    return FLProgress(run, peer, rnd, 3, acc, 1.0 - acc, 2, "quorum", sha)


def test_book_releases_a_round_once_every_expected_node_reported():
    book = ProgressBook(RUN, 3, expected=2, grace=5.0)
    book.add("a", _p("a", 0, 0.5), now=0.0)
    assert book.due(1.0) == [] and book.next_deadline() == 5.0
    book.add("b", _p("b", 0, 0.7, sha="b" * 64), now=1.0)
    (s,) = book.due(1.0)
    assert (s.round, s.nodes, s.models) == (0, 2, 2)
    assert s.accuracy_mean == pytest.approx(0.6) and s.accuracy_median == pytest.approx(0.6)
    assert s.accuracy_min == 0.5 and s.as_json()["accuracy"] == s.accuracy_mean
    assert not book.done


def test_book_releases_after_grace_skips_silent_rounds_and_drops_bad_reports():
    book = ProgressBook(RUN, 3, expected=3, grace=2.0)
    book.add("a", _p("a", 1, 0.9), now=10.0)  # round 0 was never reported
    book.add("a", _p("a", 1, 0.1), now=10.5)  # repeat
    book.add("b", _p("a", 1, 0.1), now=10.5)  # signer is not the named peer
    book.add("c", _p("c", 1, 0.1, run="other"), now=10.5)  # another run
    book.add("c", _p("c", 7, 0.1), now=10.5)  # no such round
    assert book.dropped == 4
    assert book.due(11.9) == []
    (s,) = book.due(12.0)
    assert s.round == 1 and s.nodes == 1 and s.accuracy_mean == 0.9
    book.add("a", _p("a", 0, 0.2), now=12.5)  # too late: round 0 was skipped
    assert book.dropped == 5
    book.add("a", _p("a", 2, 0.95), now=13.0)
    assert book.due(15.0)[0].round == 2 and book.done


def test_book_expects_every_node_it_has_heard_from():
    book = ProgressBook(RUN, 2, expected=1, grace=100.0)
    book.add("a", _p("a", 0, 0.5), now=0.0)
    book.add("b", _p("b", 0, 0.5), now=0.0)
    assert [s.nodes for s in book.due(0.0)] == [2]
    book.add("a", _p("a", 1, 0.5), now=1.0)
    assert book.due(1.0) == [] and book.expected == 2


def test_fl_section_from_toml_and_partitions():
    sec = from_table(FLSection, {"partition": "2/5", "epochs": 2, "controllers": ["x"]})
    assert sec.controllers == ("x",) and train_config(sec).epochs == 2
    loader = make_loader(sec, "anything")
    assert loader == DigitsPartition(2, 5)
    k, n = partition_of("", "12D3KooWpeer", 7)
    assert n == 7 and 0 <= k < 7 and partition_of("", "12D3KooWpeer", 7) == (k, n)
    for bad in ("3", "a/b", "5/5", "-1/3"):
        with pytest.raises(LocalError):
            FLSection(partition=bad)
    with pytest.raises(LocalError):
        from_table(FLSection, {"partitions": "1/2"})
    with pytest.raises(LocalError, match="module:function"):
        FLSection(loader="nocolon")


def my_loader() -> ArrayLoader:
    train, test = load_digits_split()
    return ArrayLoader(train, test)


def test_fl_section_loader_plugs_in_own_data():
    loader = make_loader(FLSection(loader=f"{__name__}:my_loader"), "p")
    assert isinstance(loader, ArrayLoader) and len(loader.train_data()) > 1000
    with pytest.raises(LocalError):
        make_loader(FLSection(loader=f"{__name__}:nothing_here"), "p")
    with pytest.raises(LocalError, match="not a DataLoader"):
        make_loader(FLSection(loader="os:getcwd"), "p")


IDENT = Identity.generate()


@given(st.binary(max_size=300))
def test_fl_messages_decode_or_raise_remote_error(data: bytes):
    for cls in (FLStart, FLAck, FLProgress):
        try:
            env, msg = wire.open_as(cls, data)
        except RemoteError:
            continue
        assert isinstance(msg, cls) and len(env.author) == 32


@given(st.text(max_size=20), st.integers(0, 10**6), st.floats(0, 1), st.booleans())
def test_fl_messages_round_trip_sealed(run_id: str, n: int, acc: float, flag: bool):
    start = make_start(model="digits", rounds=n + 1, strategy="fedavg", quorum=1, round_timeout_s=acc + 1,
                       now_ms=n, run_id=run_id or "r")
    prog = FLProgress(run_id, IDENT.peer_id, n, n + 1, acc, 1 - acc, n, "quorum", "")
    ack = FLAck(run_id, IDENT.peer_id, flag, "started")
    for msg in (start, prog, ack):
        sealed = wire.seal(IDENT, msg)
        env, back = wire.open_as(type(msg), sealed)
        assert back == msg and env.author_id == IDENT.peer_id
        with pytest.raises(RemoteError):
            wire.open_as(type(msg), sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_book_stops_waiting_for_nodes_that_never_report():
    book = ProgressBook(RUN, 3, expected=5, grace=2.0)  # 5 nodes known, 2 take part
    for peer in ("a", "b"):
        book.add(peer, _p(peer, 0, 0.5), now=0.0)
    assert book.due(1.0) == []
    assert [s.nodes for s in book.due(2.0)] == [2] and book.expected == 2
    for peer in ("a", "b"):
        book.add(peer, _p(peer, 1, 0.6), now=3.0)
    assert [s.round for s in book.due(3.0)] == [1]  # no grace wait any more
