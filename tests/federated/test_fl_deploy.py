"""Deployment helpers: certificates, SuperNode keys, FLWR_HOME config, command lines (no processes)."""

from __future__ import annotations

import ipaddress
import tomllib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from federated import FlowerRunFailed
from federated.deploy import (
    APP_DIR,
    FlowerResult,
    flwr_env,
    make_supernode_keys,
    make_tls,
    run_command,
    superlink_command,
    supernode_command,
    write_connection,
)


def test_tls_files_chain_to_the_ca_and_name_loopback(tmp_path):
    tls = make_tls(tmp_path, hosts=("127.0.0.1", "localhost"))
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert tls.server_key.stat().st_mode & 0o077 == 0


def test_supernode_keys_are_nist_ec_in_openssh_format(tmp_path):
    keys = make_supernode_keys(tmp_path, "n0")
    priv = load_ssh_private_key(keys.private.read_bytes(), None)
    pub = load_ssh_public_key(keys.public.read_bytes())
    assert isinstance(priv, ec.EllipticCurvePrivateKey) and isinstance(pub, ec.EllipticCurvePublicKey)
    assert pub.curve.name == "secp384r1"
    assert priv.public_key().public_numbers() == pub.public_numbers()


def test_connection_config_and_commands(tmp_path):
    tls = make_tls(tmp_path / "certs")
    cfg = tomllib.loads(write_connection(tmp_path / "home", "127.0.0.1:9999", tls.ca_cert).read_text())
    assert cfg["superlink"]["default"] == "edgenode"
    assert cfg["superlink"]["edgenode"]["address"] == "127.0.0.1:9999"
    assert cfg["superlink"]["edgenode"]["root-certificates"] == str(tls.ca_cert.resolve())
    env = flwr_env(tmp_path / "home", base={"PATH": "/bin"})
    assert env["FLWR_HOME"] == str(tmp_path / "home") and env["FLWR_TELEMETRY_ENABLED"] == "0"
    link = superlink_command(tls=tls, port=9999)
    assert "--enable-supernode-auth" in link and "--insecure" not in link
    assert "--disable-runtime-dependency-installation" in link
    node = supernode_command(superlink="127.0.0.1:9999", ca_cert=tls.ca_cert, keys=None, port=9100, partition=1,
                             num_partitions=3)
    assert node[node.index("--node-config") + 1] == "partition-id=1 num-partitions=3"
    run = run_command(APP_DIR, {"num-server-rounds": 2, "strategy": "fedavg"})
    assert run[-1] == 'num-server-rounds=2 strategy="fedavg"'
    app = tomllib.loads((APP_DIR / "pyproject.toml").read_text())
    assert app["tool"]["flwr"]["app"]["components"]["serverapp"] == "federated.flower_app:server_app"


def test_flower_result_figures():
    res = FlowerResult([{"round": 0, "accuracy": 0.1, "loss": 2.3, "t": 10.0},
                        {"round": 1, "accuracy": 0.9, "loss": 0.4, "t": 22.0},
                        {"round": 2, "accuracy": 0.95, "loss": 0.3, "t": 30.0}], True, 31.0)
    assert res.final_accuracy == 0.95
    assert res.seconds_per_round == 10.0
    with pytest.raises(FlowerRunFailed):
        _ = FlowerResult([], False, 1.0).final_accuracy
