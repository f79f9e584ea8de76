"""The CLI against real node processes over real libp2p on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import wasmtime
from _swarm_procs import EDGENODE, Lines, NodeProc, cli, env

from edgenode import wire
from edgenode.cli._common import EXIT_NO_EXECUTOR, EXIT_OK, EXIT_TASK_FAILED, EXIT_UNREACHABLE
from edgenode.protocol import RESULT_KIND, Receipt, TaskRecord
from ledger import LEDGER_DB, Entry, SqliteLedgerStore, verify_entry, verify_store

pytestmark = pytest.mark.integration
CAT = Path(__file__).resolve().parents[1] / "node" / "cat.wat"


@pytest.fixture
def cat_module(tmp_path: Path) -> Path:
    p = tmp_path / "cat.wasm"
    p.write_bytes(bytes(wasmtime.wat2wasm(CAT.read_text())))
    return p


@pytest.mark.timeout(180)
def test_cli_paths_and_exit_codes(tmp_path: Path, cat_module: Path) -> None:
    node = NodeProc(tmp_path / "n0")
    try:
        boot = node.addrs[0]
        (tmp_path / "in.txt").write_text("hello edge\n")
        ok = cli("submit", str(cat_module), "--bootstrap", boot, "--stdin", str(tmp_path / "in.txt"), "--json")
        assert ok.returncode == EXIT_OK, ok.stderr
        res = json.loads(ok.stdout)
        assert res["output"] == "hello edge\n" and res["executor"] == node.peer_id
        env_ = wire.open_envelope(base64.b64decode(res["receipts"][0]["receipt_b64"]))
        assert env_.author_id == node.peer_id and isinstance(env_.message, Receipt)

        nox = cli("submit", str(cat_module), "--bootstrap", boot, "--require", "gpu:h200")
        assert nox.returncode == EXIT_NO_EXECUTOR and nox.stderr.startswith("edgenode: error: no node can take")

        bad = tmp_path / "bad.wasm"
        bad.write_bytes(b"not wasm")
        failed = cli("submit", str(bad), "--bootstrap", boot)
        assert failed.returncode == EXIT_TASK_FAILED and "invalid_module" in failed.stderr

        dead = boot.replace(boot.split("/")[4], "1")  # same peer id, a closed port
        unreach = cli("submit", str(cat_module), "--bootstrap", dead, "--join-timeout", "2")
        assert unreach.returncode == EXIT_UNREACHABLE
        assert unreach.stderr.strip().splitlines()[-1].startswith("edgenode: error: no bootstrap peer reachable")

        st = cli("status", "--bootstrap", boot, "--json")
        assert st.returncode == EXIT_OK
        (peer,) = json.loads(st.stdout)["peers"]
        assert peer["peer_id"] == node.peer_id and "wasm" in peer["capabilities"]
    finally:
        assert node.terminate() == 0


async def _ledger_records(home: Path) -> tuple[bool, list[tuple[TaskRecord, bytes]]]:
    store = await SqliteLedgerStore.open(home / LEDGER_DB, readonly=True)
    try:
        report = await verify_store(store)
        out = []
        for author in await store.authors():
            for e in await store.range(author, 1, 1 << 40):
                if e.kind == RESULT_KIND and e.body is not None:
                    out.append((wire.from_bytes(TaskRecord, e.body), e.author + e.hash))
        return report.ok, out
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hundred_tasks_with_a_node_killed(tmp_path: Path, cat_module: Path) -> None:
    first = NodeProc(tmp_path / "n0")
    nodes = [first] + [NodeProc(tmp_path / f"n{i}", bootstrap=first.addrs) for i in range(1, 5)]
    victim = nodes[2]
    boots = [a for n in (nodes[0], nodes[1]) for a in n.addrs]
    procs = []
    errs = []
    for b in range(4):
        (tmp_path / f"in{b}.txt").write_text(f"batch {b}\n")
        cmd = [*EDGENODE, "submit", str(cat_module), "--bootstrap", *boots, "--stdin", str(tmp_path / f"in{b}.txt"),
               "--repeat", "25", "--json", "--deadline-ms", "60000"]
        err = open(tmp_path / f"submit{b}.err", "w")  # noqa: SIM115
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env()))
        errs.append(err)
    readers = [Lines(p) for p in procs]
    try:
        # kill one executor once results have started to flow
        assert readers[0].next(timeout=120) is not None
        victim.kill()
        results = []
        for b, (p, r) in enumerate(zip(procs, readers, strict=True)):
            lines = r.rest(timeout=240)
            assert p.wait(60) == EXIT_OK, (tmp_path / f"submit{b}.err").read_text()[-3000:]
            r.close()
            for line in lines:
                res = json.loads(line)
                assert res["status"] == "ok" and res["output"] == f"batch {b}\n"
                results.append(res)
        assert len(results) == 100
        assert len({r["task_id"] for r in results}) == 100  # every task completed, once
        for r in results:
            (rc,) = r["receipts"]
            env_ = wire.open_envelope(base64.b64decode(rc["receipt_b64"]))
            assert env_.author_id == r["executor"]
            entry = Entry.from_bytes(env_.message.entry)
            verify_entry(entry)
            assert entry.hash.hex() == rc["entry_hash"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
        for e in errs:
            e.close()
        codes = [n.terminate() for n in nodes if n is not victim]
    assert codes == [0, 0, 0, 0]
    # every ledger verifies; no chain records a task twice; every accepted receipt is in its executor's ledger;
    # a task is recorded by two executors only when one of them is the node killed mid-run
    victim_key = bytes.fromhex(victim_pubkey(victim))
    recorded_by: dict[str, set[bytes]] = {}
    entry_hashes: set[str] = set()
    for n in nodes:
        ok, records = asyncio.run(_ledger_records(n.home))
        assert ok, f"ledger of {n.peer_id} does not verify"
        per_chain = Counter((key[:32], rec.task_id) for rec, key in records)
        assert max(per_chain.values(), default=1) == 1
        for rec, key in records:
            recorded_by.setdefault(rec.task_id, set()).add(key[:32])
            entry_hashes.add(key[32:].hex())
    for r in results:
        assert r["receipts"][0]["entry_hash"] in entry_hashes
        authors = recorded_by[r["task_id"]]
        assert len(authors) == 1 or (len(authors) == 2 and victim_key in authors), r["notes"]


def victim_pubkey(node: NodeProc) -> str:
    from edgenode.identity import public_key_from_peer_id

    return public_key_from_peer_id(node.peer_id).hex()
