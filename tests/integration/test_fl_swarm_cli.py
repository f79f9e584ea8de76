"""``edgenode fl start --bootstrap`` against real ``edgenode run`` processes on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _swarm_procs import NodeProc, cli

from edgenode.cli._common import EXIT_NO_EXECUTOR, EXIT_OK, EXIT_UNREACHABLE
from edgenode.inference import ModelRegistry

pytestmark = pytest.mark.integration


class FLNodeProc(NodeProc):
    """``edgenode run`` whose ``[fl]`` section is edited in config.toml before it starts."""

    def __init__(self, home: Path, partition: str, bootstrap: list[str] | None = None, enabled: bool = True) -> None:
        def configure(text: str) -> str:
            assert '# partition = ""' in text and "# enabled = true" in text
            text = text.replace('# partition = ""', f'partition = "{partition}"')
            return text.replace("# enabled = true", f"enabled = {str(enabled).lower()}")

        super().__init__(home, bootstrap, slots=None, configure=configure)


@pytest.mark.slow
def test_fl_start_on_three_running_nodes(tmp_path: Path) -> None:
    n, rounds = 3, 3
    first = FLNodeProc(tmp_path / "n0", f"0/{n}")
    nodes = [first] + [FLNodeProc(tmp_path / f"n{k}", f"{k}/{n}", bootstrap=first.addrs) for k in range(1, n)]
    try:
        res = cli("fl", "start", "--bootstrap", first.addrs[0], "--model", "digits", "--rounds", str(rounds),
                  "--strategy", "fedavg", "--quorum", str(n), "--round-timeout", "20", "--json", timeout=240)
        assert res.returncode == EXIT_OK, res.stderr[-3000:]
        lines = [json.loads(line) for line in res.stdout.splitlines()]
        assert [r["round"] for r in lines] == list(range(rounds))
        assert len({r["run_id"] for r in lines}) == 1
        last = lines[-1]
        assert last["nodes"] == n and last["updates"] == n
        assert last["accuracy"] >= 0.85 and len(last["model_sha256"]) == 64
    finally:
        codes = [node.terminate() for node in nodes]
    assert codes == [0] * n
    # every node noted its updates in its ledger, which verifies; its digits alias serves an aggregated model
    served = []
    for node in nodes:
        ver = cli("ledger", "verify", "--home", str(node.home), "--json")
        assert ver.returncode == EXIT_OK, ver.stdout + ver.stderr
        served.append(ModelRegistry(node.home / "models").resolve("digits"))
    assert last["model_sha256"] in served

def test_fl_start_with_an_unreachable_bootstrap_exits_4(tmp_path: Path) -> None:
    from edgenode.identity import Identity

    dead = f"/ip4/127.0.0.1/tcp/1/p2p/{Identity.generate().peer_id}"
    res = cli("fl", "start", "--bootstrap", dead, "--rounds", "1", "--join-timeout", "2", timeout=60)
    assert res.returncode == EXIT_UNREACHABLE
    assert res.stderr.strip().splitlines()[-1].startswith("edgenode: error: no bootstrap peer reachable")


def test_fl_start_on_nodes_with_fl_disabled_exits_6(tmp_path: Path) -> None:
    node = FLNodeProc(tmp_path / "n0", "0/1", enabled=False)
    try:
        res = cli("fl", "start", "--bootstrap", node.addrs[0], "--rounds", "1", "--ack-timeout", "2", timeout=60)
    finally:
        assert node.terminate() == 0
    assert res.returncode == EXIT_NO_EXECUTOR, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("edgenode: error: no node accepted the FL run") and "disabled" in last
