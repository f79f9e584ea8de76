"""A real Flower SuperLink and 2 SuperNodes on loopback (TLS, SuperNode auth) train digits."""

from __future__ import annotations

import subprocess

import pytest

from federated.deploy import FlowerFleet, free_port, make_supernode_keys, supernode_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_superlink_with_two_supernodes_trains_digits(tmp_path):
    with FlowerFleet(tmp_path, num_nodes=2, auth=True) as fleet:
        assert fleet.tls is not None
        assert sum(n["status"] == "online" for n in fleet.supernodes()) == 2
        # a SuperNode whose key was never registered is refused and exits
        rogue_keys = make_supernode_keys(tmp_path / "keys", "rogue")
        cmd = supernode_command(superlink=fleet.address, ca_cert=fleet.tls.ca_cert, keys=rogue_keys,
                                port=free_port(), partition=0, num_partitions=2)
        with (tmp_path / "rogue.log").open("wb") as log:
            rogue = subprocess.Popen(cmd, env=fleet.env, stdout=log, stderr=subprocess.STDOUT)
            try:
                assert rogue.wait(timeout=120) != 0
            finally:
                if rogue.poll() is None:
                    rogue.kill()
                    rogue.wait(timeout=10)
        assert "Failed to activate SuperNode" in (tmp_path / "rogue.log").read_text()
        assert len(fleet.supernodes()) == 2
        result = fleet.run(rounds=3, strategy="fedavg", timeout=280)
    # the outcome comes from the ServerApp's results file, not from `flwr run`'s exit code
    assert result.done
    assert [r["round"] for r in result.rounds] == [0, 1, 2, 3]
    assert result.rounds[0]["accuracy"] < 0.5  # the initial (zero) model
    assert result.final_accuracy >= 0.90
