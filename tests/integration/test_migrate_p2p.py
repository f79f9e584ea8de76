"""Migration over real libp2p: three ``edgenode run`` processes; the executor of a running task gets
SIGTERM, the task moves (checkpoint, snapshot, resume) and finishes on another node.

The submitter (``edgenode submit``) waits once and gets one verified result: the second
executor's receipt inside the first's handover, with the output of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _swarm_procs import EDGENODE, NodeProc, cli, env

from edgenode import wire
from edgenode.cli._common import EXIT_NO_EXECUTOR, EXIT_OK, EXIT_REMOTE
from edgenode.protocol import RESULT_KIND, Receipt
from edgenode.sandbox import Limits, Sandbox, SandboxConfig, TaskIO, have_wasm_opt
from edgenode.tasks import CHECKPOINT_KIND, RESUMED_KIND, CheckpointRecord, ResumedRecord
from ledger import LEDGER_DB, Entry, SqliteLedgerStore, verify_store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not have_wasm_opt(), reason="binaryen's wasm-opt is not installed (scripts/setup.sh)"),
]
FUEL = 150_000_000_000  # about 15 s of this task here: it is still running when its node is stopped
STDIN = b"6000 16 14 " + b" ".join(str(i * 7919 % 1000003).encode() for i in range(1000))


def _config(text: str) -> str:
    return text.replace("# max_fuel = 10000000000", f"max_fuel = {FUEL}")


async def _entries(home: Path) -> tuple[bool, list[Entry]]:
    store = await SqliteLedgerStore.open(home / LEDGER_DB, readonly=True)
    try:
        report = await verify_store(store)
        out: list[Entry] = []
        for author in await store.authors():
            out += list(await store.range(author, 1, 1 << 40))
        return report.ok, out
    finally:
        await store.close()


@dataclass
class _Run:
    """Three nodes, one `edgenode submit` of the long task, and the node that runs it."""

    nodes: list[NodeProc]
    submit: subprocess.Popen[str]
    victim: NodeProc
    baseline: bytes

    def result(self) -> dict[str, Any]:
        out, err = self.submit.communicate(timeout=180)
        assert self.submit.returncode == EXIT_OK, err[-3000:]
        res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        assert res["status"] == "ok" and res["output"] == self.baseline.decode()
        assert res["executor"] != self.victim.peer_id
        return res

    def stop(self) -> None:
        if self.submit.poll() is None:
            self.submit.kill()
            self.submit.communicate(timeout=30)
        for n in self.nodes:
            if n.proc.poll() is None:
                n.terminate(timeout=120)


def _start(tmp_path: Path, module: Path, *extra: str) -> _Run:
    (tmp_path / "in.txt").write_bytes(STDIN)
    with Sandbox(SandboxConfig(max_fuel=FUEL)) as sb:
        baseline = sb.run(sb.compile(module.read_bytes()), TaskIO(stdin=STDIN), Limits(FUEL, 30_000, 64))
    assert baseline.ok
    first = NodeProc(tmp_path / "n0", configure=_config)
    nodes = [first] + [NodeProc(tmp_path / f"n{i}", bootstrap=first.addrs, configure=_config) for i in (1, 2)]
    cmd = [*EDGENODE, "submit", str(module), "--bootstrap", *[a for n in nodes for a in n.addrs],
           "--stdin", str(tmp_path / "in.txt"), "--fuel", str(FUEL), "--timeout-ms", "30000",
           "--memory-mb", "64", "--deadline-ms", "120000", "--json", *extra]
    submit = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    # The executor compiles the module into its cache just before it runs it: that names it.
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and submit.poll() is None:
        victim = next((n for n in nodes if any((n.home / "cache").rglob("*.cwasm"))), None)
        time.sleep(0.05)
    if victim is None:
        _Run(nodes, submit, first, b"").stop()
        pytest.fail("no node started the task")
    return _Run(nodes, submit, victim, baseline.stdout)


@pytest.mark.timeout(300)
def test_sigterm_moves_a_running_task_to_another_node(tmp_path: Path, migrate_wasm_path: Path) -> None:
    run = _start(tmp_path, migrate_wasm_path)
    victim, nodes = run.victim, run.nodes
    try:
        # `edgenode migrate` is signed with the node's key: an unknown task is not moved (exit 6).
        nope = cli("migrate", "00" * 12, "--home", str(victim.home), "--node", victim.addrs[0], "--json")
        assert nope.returncode == EXIT_NO_EXECUTOR and not json.loads(nope.stdout)["moved"], nope.stderr
        time.sleep(0.5)  # let it run a while (work that must not be lost)
        assert victim.terminate(timeout=120) == 0
        res = run.result()
        assert res["attempts"] == 1
        (rc,) = res["receipts"]
        env_ = wire.open_envelope(base64.b64decode(rc["receipt_b64"]))
        assert env_.author_id == res["executor"] and isinstance(env_.message, Receipt)
    finally:
        run.stop()
    ok_a, victim_entries = asyncio.run(_entries(victim.home))
    (hop,) = [wire.from_bytes(CheckpointRecord, e.body or b"") for e in victim_entries if e.kind == CHECKPOINT_KIND]
    finisher = next(n for n in nodes if n.peer_id == res["executor"])
    ok_b, finisher_entries = asyncio.run(_entries(finisher.home))
    own = [e for e in finisher_entries if e.author.hex() == env_.author.hex()]
    kinds = [e.kind for e in own]
    assert ok_a and ok_b and hop.to == finisher.peer_id
    assert kinds[-2:] == [RESUMED_KIND, RESULT_KIND]
    resumed = wire.from_bytes(ResumedRecord, own[-2].body or b"")
    assert resumed.snapshot == hop.snapshot and resumed.sender == victim.peer_id


@pytest.mark.timeout(300)
def test_kill_9_resumes_from_the_last_snapshot(tmp_path: Path, migrate_wasm_path: Path) -> None:
    run = _start(tmp_path, migrate_wasm_path, "--checkpoint-ms", "500")
    victim, nodes = run.victim, run.nodes
    try:
        time.sleep(4.0)  # several 500 ms checkpoints shipped to the submitter
        victim.kill()  # SIGKILL: no drain, no handover
        res = run.result()
        assert res["attempts"] == 2
    finally:
        run.stop()
    _, victim_entries = asyncio.run(_entries(victim.home))
    shipped = {e.hash: wire.from_bytes(CheckpointRecord, e.body or b"") for e in victim_entries
               if e.kind == CHECKPOINT_KIND and e.author == victim_entries[0].author}
    finisher = next(n for n in nodes if n.peer_id == res["executor"])
    ok_b, finisher_entries = asyncio.run(_entries(finisher.home))
    (resumed,) = [wire.from_bytes(ResumedRecord, e.body or b"") for e in finisher_entries if e.kind == RESUMED_KIND]
    assert ok_b and resumed.sender == victim.peer_id
    by_snapshot = {h.snapshot: h for h in shipped.values()}
    assert resumed.snapshot in by_snapshot  # the victim recorded the snapshot it took before shipping it
    # At most one checkpoint interval of work lost: the resumed snapshot is the last or the one before
    # (a snapshot taken just before the kill may not have reached the submitter).
    fuels = sorted(h.fuel_used for h in shipped.values())
    assert resumed.fuel_used in fuels[-2:] and resumed.fuel_used > 0


@pytest.mark.timeout(300)
def test_edgenode_drain_moves_a_running_task_and_the_node_exits(tmp_path: Path, migrate_wasm_path: Path) -> None:
    run = _start(tmp_path, migrate_wasm_path)
    victim, nodes = run.victim, run.nodes
    try:
        stranger = tmp_path / "stranger"
        assert cli("init", "--home", str(stranger)).returncode == EXIT_OK
        refused = cli("drain", "--home", str(stranger), "--node", victim.addrs[0], "--json")
        assert refused.returncode == EXIT_REMOTE and json.loads(refused.stdout)["reason"] == "forbidden"
        time.sleep(0.5)  # let it run a while (work that must not be lost)
        drained = cli("drain", "--home", str(victim.home), "--node", victim.addrs[0], "--json")
        assert drained.returncode == EXIT_OK, drained.stderr
        answer = json.loads(drained.stdout)
        assert answer["draining"] and len(answer["moving"]) == 1, answer
        assert victim.proc.wait(timeout=180) == 0  # it stops by itself once the task has moved
        victim.terminate()  # (exited already: closes its log)
        res = run.result()
        assert res["attempts"] == 1
    finally:
        run.stop()
    ok_a, victim_entries = asyncio.run(_entries(victim.home))
    (hop,) = [wire.from_bytes(CheckpointRecord, e.body or b"") for e in victim_entries if e.kind == CHECKPOINT_KIND]
    assert ok_a and hop.to == res["executor"] and hop.task_id == answer["moving"][0]
    assert all(n.proc.poll() is not None for n in nodes)
