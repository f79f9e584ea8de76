"""Checkpoints and migration of WASM tasks: a task checkpointed at any safe point resumes to the same bytes.

The example task ``examples/tasks/migrate.c`` keeps its state in linear memory, recurses
deep, reads stdin as it goes (past wasi-libc's buffer, so the stdin offset matters) and
writes stdout as it goes. "Another node" is a second ``Sandbox`` with its own cache.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgenode.identity import Identity
from edgenode.sandbox import (
    Checkpointing,
    InvalidSnapshot,
    RunResult,
    Sandbox,
    SandboxConfig,
    Snapshot,
    SnapshotFault,
    Status,
    TaskIO,
    have_wasm_opt,
    memory_image,
    open_snapshot,
)

pytestmark = pytest.mark.skipif(not have_wasm_opt(), reason="binaryen's wasm-opt is not installed (scripts/setup.sh)")

NODE_A = Identity(bytes(range(32)))
NODE_B = Identity(bytes(range(1, 33)))
STRANGER = Identity(bytes(32))
# 6 rounds over 1 MiB, 8 levels deep: 256 leaves (safe points) per round; 64 numbers read per round.
STDIN = b"6 1 8 " + b" ".join(str(i * 7919 % 1000003).encode() for i in range(500))
IO = TaskIO(stdin=STDIN, args=("x",), env={"K": "v"})


@pytest.fixture(scope="module")
def node_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(cache_dir=tmp_path_factory.mktemp("a"))) as sb:
        yield sb


@pytest.fixture(scope="module")
def node_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(cache_dir=tmp_path_factory.mktemp("b"))) as sb:
        yield sb


@pytest.fixture(scope="module")
def migrate(tasks: dict[str, bytes], node_a: Sandbox, node_b: Sandbox) -> str:
    h = node_a.compile(tasks["migrate"])
    assert node_b.compile(tasks["migrate"]) == h
    return h


@pytest.fixture(scope="module")
def baseline(node_a: Sandbox, migrate: str) -> RunResult:
    result = node_a.run(migrate, IO)
    assert result.status is Status.OK, result
    assert result.stdout.count(b"round ") == 6 and b"digest " in result.stdout
    return result


def _every(n: int, into: list[Snapshot], signer: Identity = NODE_A) -> Checkpointing:
    return Checkpointing(signer, every_calls=n, on_snapshot=into.append)


def test_rewritten_module_exports_what_resume_needs(node_a: Sandbox, migrate: str, tasks: dict[str, bytes]) -> None:
    code = node_a.code_hash(migrate)
    assert code is not None and code != migrate
    other = node_a.compile(tasks["wordcount"])
    assert node_a.code_hash(other) is None


def test_modules_without_safe_points_run_as_before(node_a: Sandbox, tasks: dict[str, bytes]) -> None:
    h = node_a.compile(tasks["wordcount"])
    run = node_a.prepare(h, TaskIO(stdin=b"a b c\n"), checkpointing=Checkpointing(NODE_A, every_calls=1))
    assert not run.checkpointable
    assert run.request_checkpoint() is False
    result = run.start()
    assert result.status is Status.OK and result.checkpoints == 0 and result.snapshot is None
    assert result.stdout == node_a.run(h, TaskIO(stdin=b"a b c\n")).stdout


def test_checkpointable_task_without_checkpointing_runs_as_before(baseline: RunResult) -> None:
    assert baseline.checkpoints == 0 and baseline.snapshot is None and baseline.resumed_from is None


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(every=st.integers(min_value=1, max_value=1500), pick=st.randoms(use_true_random=False))  # 1,538 safe points
def test_resume_from_any_safe_point_gives_identical_output(
    node_a: Sandbox, node_b: Sandbox, migrate: str, baseline: RunResult, every: int, pick: random.Random
) -> None:
    snaps: list[Snapshot] = []
    first = node_a.run(migrate, IO, checkpointing=_every(every, snaps))
    assert first.status is Status.OK and first.stdout == baseline.stdout  # checkpoints do not disturb the run
    assert first.checkpoints == len(snaps) >= 1
    upto = pick.randrange(len(snaps))
    # The receiving node opens the bytes as they travel: signed by A, trusted by B.
    chain = [node_b.open_snapshot(s.data, trusted={NODE_A.public_key}) for s in snaps[: upto + 1]]
    resumed = node_b.run(migrate, IO, resume=chain)
    assert resumed.status is Status.OK
    assert resumed.stdout == baseline.stdout and resumed.stderr == baseline.stderr
    assert resumed.resumed_from == snaps[upto].id
    assert resumed.fuel_used >= baseline.fuel_used  # rewinding re-runs the path to the safe point


def test_stop_on_request_then_multi_hop(node_a: Sandbox, node_b: Sandbox, migrate: str, baseline: RunResult) -> None:
    run = node_a.prepare(migrate, IO, checkpointing=Checkpointing(NODE_A))
    assert run.checkpointable
    # Asked from another thread before the task starts: it stops at its first safe point.
    asker = threading.Thread(target=run.request_checkpoint)
    asker.start()
    asker.join(timeout=10)
    hop1 = run.start()
    assert hop1.status is Status.CHECKPOINTED and hop1.snapshot is not None and hop1.checkpoints == 1
    snap1 = node_b.open_snapshot(hop1.snapshot.data, trusted={NODE_A.public_key})
    assert snap1.state.seq == 0 and snap1.state.base is None
    # Node B resumes, runs 700 more safe points and checkpoints again (a delta on A's snapshot).
    got: list[Snapshot] = []
    run_b = node_b.prepare(migrate, IO, resume=[snap1], checkpointing=_every(700, got, NODE_B))
    run_b.request_checkpoint(stop=False)  # one at the first safe point too, and the run goes on
    hop2 = run_b.start()
    assert hop2.status is Status.OK and hop2.stdout == baseline.stdout
    assert hop2.resumed_from == snap1.id and len(got) >= 2
    delta = got[1]
    assert delta.state.base == got[0].id and delta.state.seq == 2 and got[0].state.base == snap1.id
    # Back on A from B's second snapshot: the whole chain rebuilds the memory.
    chain = [node_a.open_snapshot(s.data, trusted={NODE_A.public_key, NODE_B.public_key}) for s in
             (snap1, got[0], got[1])]
    hop3 = node_a.run(migrate, IO, resume=chain)
    assert hop3.status is Status.OK and hop3.stdout == baseline.stdout
    assert delta.state.fuel_used > snap1.state.fuel_used
    assert hop3.fuel_used >= baseline.fuel_used


def test_snapshot_records_io_so_far(node_a: Sandbox, migrate: str, baseline: RunResult) -> None:
    snaps: list[Snapshot] = []
    node_a.run(migrate, IO, checkpointing=_every(1100, snaps))
    s = snaps[-1].state
    assert s.stdout and baseline.stdout.startswith(s.stdout)
    assert s.stdin_offset > 1024  # past wasi-libc's first buffer of stdin
    assert s.args == ("x",) and s.env == (("K", "v"),)
    assert s.module_hash == baseline.module_hash and s.fuel_used > 0
    assert any(name.startswith("__edgenode_global_") for name, _, _ in s.globals)


def _one_snapshot(node: Sandbox, h: str, signer: Identity = NODE_A) -> Snapshot:
    snaps: list[Snapshot] = []
    node.run(h, IO, checkpointing=_every(300, snaps, signer))
    return snaps[0]


def test_tampered_snapshot_is_refused(node_a: Sandbox, node_b: Sandbox, migrate: str) -> None:
    snap = _one_snapshot(node_a, migrate)
    for at in (40, len(snap.data) // 2, len(snap.data) - 70, len(snap.data) - 1):
        bad = bytearray(snap.data)
        bad[at] ^= 0x01
        with pytest.raises(InvalidSnapshot) as err:
            node_b.open_snapshot(bytes(bad), trusted={NODE_A.public_key})
        assert err.value.fault in (SnapshotFault.BAD_SIGNATURE, SnapshotFault.MALFORMED)


def test_stranger_signed_snapshot_is_refused(node_a: Sandbox, node_b: Sandbox, migrate: str) -> None:
    snap = _one_snapshot(node_a, migrate, STRANGER)
    with pytest.raises(InvalidSnapshot) as err:
        node_b.open_snapshot(snap.data, trusted={NODE_A.public_key, NODE_B.public_key})
    assert err.value.fault is SnapshotFault.UNTRUSTED


def test_snapshot_of_another_module_is_refused(
    node_a: Sandbox, node_b: Sandbox, migrate: str, tasks: dict[str, bytes]
) -> None:
    snap = node_b.open_snapshot(_one_snapshot(node_a, migrate).data)
    # The same task with a custom section added: another module hash.
    other = node_b.compile(tasks["migrate"] + b"\x00\x06\x05other")
    assert other != migrate
    with pytest.raises(InvalidSnapshot) as err:
        node_b.prepare(other, IO, resume=[snap])
    assert err.value.fault is SnapshotFault.WRONG_MODULE
    plain = node_b.compile(tasks["wordcount"])
    with pytest.raises(InvalidSnapshot) as err:
        node_b.prepare(plain, IO, resume=[snap])
    assert err.value.fault is SnapshotFault.WRONG_MODULE


def test_snapshot_for_other_input_is_refused(node_a: Sandbox, migrate: str) -> None:
    snap = _one_snapshot(node_a, migrate)
    for io in (TaskIO(stdin=STDIN + b" 1", args=IO.args, env=IO.env), TaskIO(stdin=STDIN, args=(), env=IO.env)):
        with pytest.raises(InvalidSnapshot) as err:
            node_a.prepare(migrate, io, resume=[snap])
        assert err.value.fault is SnapshotFault.WRONG_IO


def test_broken_chain_is_refused(node_a: Sandbox, migrate: str) -> None:
    snaps: list[Snapshot] = []
    node_a.run(migrate, IO, checkpointing=_every(400, snaps))
    assert len(snaps) >= 3 and snaps[1].state.base == snaps[0].id
    for chain in ([snaps[1]], [snaps[0], snaps[2]]):
        with pytest.raises(InvalidSnapshot) as err:
            memory_image(chain)
        assert err.value.fault is SnapshotFault.BROKEN_CHAIN
        with pytest.raises(InvalidSnapshot):
            node_a.prepare(migrate, IO, resume=chain)


def test_memory_over_the_cap_is_refused_before_inflating(node_a: Sandbox, migrate: str) -> None:
    snap = _one_snapshot(node_a, migrate)
    with pytest.raises(InvalidSnapshot) as err:
        open_snapshot(snap.data, max_pages=2)
    assert err.value.fault is SnapshotFault.TOO_LARGE


def test_snapshot_bytes_round_trip(node_a: Sandbox, migrate: str) -> None:
    snap = _one_snapshot(node_a, migrate)
    again = open_snapshot(snap.data)
    assert again.state == snap.state and again.id == snap.id and again.author == NODE_A.public_key


@pytest.fixture(scope="module")
def sample(node_a: Sandbox, migrate: str) -> Snapshot:
    return _one_snapshot(node_a, migrate)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decoding_is_total(sample: Snapshot, data: st.DataObject) -> None:
    """Any change to a snapshot's bytes is refused with ``InvalidSnapshot``, never another error."""
    snap = sample
    raw = bytearray(snap.data)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    try:
        open_snapshot(blob)
    except InvalidSnapshot:
        return
    assert blob == snap.data


def test_run_granted_a_directory_takes_no_checkpoints(node_a: Sandbox, migrate: str, tmp_path: Path) -> None:
    io = TaskIO(stdin=STDIN, args=IO.args, env=IO.env, readonly_dir=tmp_path)
    run = node_a.prepare(migrate, io, checkpointing=Checkpointing(NODE_A, every_calls=1))
    assert not run.checkpointable
    assert run.start().status is Status.OK


def test_precompiled_cache_keeps_the_rewritten_module(tmp_path: Path, tasks: dict[str, bytes]) -> None:
    cfg = SandboxConfig(cache_dir=tmp_path)
    with Sandbox(cfg) as first:
        h = first.compile(tasks["migrate"])
        code = first.code_hash(h)
    with Sandbox(cfg) as second:
        assert second.has_module(h)
        assert second.code_hash(h) == code  # loaded from disk, not rewritten again
        snaps: list[Snapshot] = []
        result = second.run(h, IO, checkpointing=_every(500, snaps))
        assert result.status is Status.OK and snaps


def test_paced_periodic_snapshots_resume(node_a: Sandbox, node_b: Sandbox, migrate: str) -> None:
    """Without ``every_calls`` the task calls the host about once a millisecond; periodic snapshots still resume."""
    io = TaskIO(stdin=b"40 2 10 " + b" ".join(str(i).encode() for i in range(3000)))
    plain = node_a.run(migrate, io)
    snaps: list[Snapshot] = []
    paced = node_a.prepare(migrate, io, checkpointing=Checkpointing(NODE_A, every_ms=1, on_snapshot=snaps.append))
    result = paced.start()
    assert result.status is Status.OK and result.stdout == plain.stdout
    assert snaps, "tens of milliseconds of work pass at least one 1 ms checkpoint"
    chain = [node_b.open_snapshot(s.data) for s in snaps]
    assert node_b.run(migrate, io, resume=chain).stdout == plain.stdout
