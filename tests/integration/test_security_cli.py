"""Swarm mode through the CLI: a certified node process, member and stranger submitters, a pushed revocation.

Real ``edgenode`` processes over real libp2p on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import wasmtime
from _swarm_procs import EDGENODE, Lines, cli, env

from edgenode import wire
from edgenode.cli._common import EXIT_OK
from edgenode.protocol import Receipt

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CAT = Path(__file__).resolve().parents[1] / "node" / "cat.wat"


def _peer_id(home: Path) -> str:
    subprocess.run([*EDGENODE, "init", "--home", str(home)], check=True, capture_output=True, env=env())
    return cli("id", "--home", str(home)).stdout.strip()


def _metric(url: str, name: str, reason: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.timeout(240)
def test_swarm_mode_cli(tmp_path: Path) -> None:
    cat = tmp_path / "cat.wasm"
    cat.write_bytes(bytes(wasmtime.wat2wasm(CAT.read_text())))
    admin, node_home, member = tmp_path / "admin", tmp_path / "node", tmp_path / "member"
    created = cli("swarm", "create", "--home", str(admin))
    assert created.returncode == EXIT_OK, created.stderr
    swarm_id = created.stdout.split()[2]
    node_id, member_id = _peer_id(node_home), _peer_id(member)
    for pid, home, role in ((node_id, node_home, "executor"), (member_id, member, "submitter")):
        res = cli("swarm", "admit", pid, "--home", str(admin), "--role", role, "--out", str(home / "swarm.cert"))
        assert res.returncode == EXIT_OK, res.stderr
    (node_home / "config.toml").write_text(f'[swarm]\nswarm_id = "{swarm_id}"\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(node_home / "stderr.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [*EDGENODE, "run", "--home", str(node_home), "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env(),
    )
    lines = Lines(proc)
    try:
        addr, metrics, swarm_line = "", "", ""
        while not (addr and metrics):
            line = lines.next(60)
            assert line is not None, (node_home / "stderr.log").read_text()[-2000:]
            if line.startswith("listening "):
                addr = addr or line.split()[-1]
            elif line.startswith("metrics "):
                metrics = line.split()[-1]
            elif line.startswith("swarm "):
                swarm_line = line
        assert swarm_line.startswith(f"swarm {swarm_id} member roles executor")
        (tmp_path / "in.txt").write_text("members only\n")

        ok = cli("submit", str(cat), "--bootstrap", addr, "--home", str(member), "--stdin", str(tmp_path / "in.txt"),
                 "--json")
        assert ok.returncode == EXIT_OK, ok.stderr
        res = json.loads(ok.stdout)
        assert res["output"] == "members only\n"
        rc = wire.open_envelope(base64.b64decode(res["receipts"][0]["receipt_b64"])).message
        assert isinstance(rc, Receipt) and rc.grants["fuel"] and b"members only" not in rc.output

        stranger = cli("submit", str(cat), "--bootstrap", addr, "--stdin", str(tmp_path / "in.txt"))
        assert stranger.returncode != EXIT_OK and stranger.stderr.startswith("edgenode: error:")
        assert _metric(metrics, "edgenode_security_refusals_total", "no_certificate") >= 1

        rev = cli("swarm", "revoke", member_id, "--home", str(admin), "--out", str(tmp_path / "m.revoke"))
        assert rev.returncode == EXIT_OK, rev.stderr
        pushed = cli("swarm", "push", str(tmp_path / "m.revoke"), "--bootstrap", addr)
        assert pushed.returncode == EXIT_OK, pushed.stderr + pushed.stdout
        again = cli("submit", str(cat), "--bootstrap", addr, "--home", str(member), "--stdin",
                    str(tmp_path / "in.txt"))
        assert again.returncode != EXIT_OK and again.stderr.startswith("edgenode: error:")
        assert _metric(metrics, "edgenode_security_refusals_total", "revoked") >= 1
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(60)
        lines.close()
        log.close()
