"""First-boot provisioning (firmware/rootfs/usr/lib/edgenode/firstboot.py) against scratch roots."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edgenode.config import load_config
from edgenode.identity import KEY_FILE, Identity

REPO = Path(__file__).resolve().parents[2]
FIRSTBOOT = REPO / "firmware" / "rootfs" / "usr" / "lib" / "edgenode" / "firstboot.py"
EXAMPLE = REPO / "firmware" / "boot" / "edgenode.toml.example"
PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edgenode_firstboot", FIRSTBOOT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["edgenode_firstboot"] = mod
    spec.loader.exec_module(mod)
    return mod


fb = _load()


def run(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FIRSTBOOT), "--root", str(root), "--owner", "", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def boot_toml(root: Path, text: str) -> None:
    path = root / "boot/firmware/edgenode.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_fresh_device_without_boot_config(tmp_path: Path) -> None:
    res = run(tmp_path)
    assert res.returncode == 0, res.stderr
    home = tmp_path / "var/lib/edgenode"
    ident = Identity.load(home / KEY_FILE)
    assert f"peer id {ident.peer_id} " in res.stdout and "key created" in res.stdout
    hostname = (tmp_path / "etc/hostname").read_text().strip()
    assert hostname == fb.hostname_for(ident.peer_id)
    assert f"127.0.1.1\t{hostname}" in (tmp_path / "etc/hosts").read_text()
    assert not (tmp_path / "etc/default/edgenode").exists()

    # Idempotent: the key (and so the hostname) survives the next boot.
    again = run(tmp_path)
    assert again.returncode == 0 and "key kept" in again.stdout
    assert Identity.load(home / KEY_FILE).peer_id == ident.peer_id
    assert (tmp_path / "etc/hostname").read_text().strip() == hostname
    assert (tmp_path / "etc/hosts").read_text().count("127.0.1.1") == 1


def test_example_boot_config_is_applied(tmp_path: Path) -> None:
    boot_toml(tmp_path, EXAMPLE.read_text())
    res = run(tmp_path)
    assert res.returncode == 0, res.stderr
    assert "swarm my-swarm wifi yes" in res.stdout
    cfg = load_config(tmp_path / "var/lib/edgenode")  # the node accepts what was written
    assert cfg.net.bootstrap == ("/ip4/192.168.1.10/tcp/4001/p2p/12D3KooWExamplePeerIdReplaceMe",)
    assert (tmp_path / "etc/default/edgenode").read_text().splitlines()[-1] == "EDGENODE_SWARM=my-swarm"
    wpa = tmp_path / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    text = wpa.read_text()
    assert "my-passphrase" not in text  # stored hashed, as wpa_passphrase would
    expected = hashlib.pbkdf2_hmac("sha1", b"my-passphrase", b"my-network", 4096, 32).hex()
    assert f"psk={expected}" in text and "country=DE" in text
    assert wpa.stat().st_mode & 0o077 == 0
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
    assert os.readlink(wants) == "/lib/systemd/system/wpa_supplicant@.service"
    keys = (tmp_path / "root/.ssh/authorized_keys").read_text()
    assert keys.startswith("ssh-ed25519 ")


def test_hostname_override_and_config_values(tmp_path: Path) -> None:
    boot_toml(
        tmp_path,
        f'[system]\nhostname = "edge-kitchen"\n[net]\nbootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/{PEER}"]\n'
        'mdns = true\n[node]\nslots = 3\ncost_class = "low"\n',
    )
    res = run(tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "etc/hostname").read_text() == "edge-kitchen\n"
    cfg = load_config(tmp_path / "var/lib/edgenode")
    assert cfg.net.mdns is True and cfg.node.slots == 3 and cfg.node.cost_class == "low"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[net]\nbootstrapp = []\n", "unknown keys"),
        ('[net]\nmdns = "yes"\n', "expected bool"),
        ('[wifi]\nssid = "x"\npsk = "short"\ncountry = "DE"\n', "8 to 63"),
        ('[wifi]\nssid = "x"\npsk = "longenough"\ncountry = "germany"\n', "two-letter"),
        ('[swarm]\nname = "bad name!"\n', "swarm.name"),
        ('[system]\nhostname = "Bad_Host"\n', "not a valid host name"),
        ('[ssh]\nauthorized_keys = ["not a key"]\n', "authorized_keys"),
        ("[network]\n", "unknown tables"),
        ("[net\n", "edgenode.toml"),
    ],
)
def test_bad_boot_config_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    boot_toml(tmp_path, text)
    # Validated in full before anything is written: no key, no hostname on a bad file.
    assert fb.main(["--root", str(tmp_path), "--owner", "", "--edgenode", "false"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgenode-firstboot: error: ")
    assert message in err
    assert not (tmp_path / "var/lib/edgenode").exists()
    assert not (tmp_path / "etc/hostname").exists()


def test_bad_boot_config_from_the_command_line(tmp_path: Path) -> None:
    boot_toml(tmp_path, "[net]\nbootstrapp = []\n")
    res = run(tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith("edgenode-firstboot: error: ") and "unknown keys" in res.stderr
    assert "Traceback" not in res.stderr


def test_render_config_round_trips_quotes(tmp_path: Path) -> None:
    text = fb.render_config({"net": {"listen": ['/ip4/0.0.0.0/tcp/4001"x'], "mdns": False}, "node": {"slots": 1}})
    (tmp_path / "config.toml").write_text(text)
    cfg = load_config(tmp_path)
    assert cfg.net.listen == ('/ip4/0.0.0.0/tcp/4001"x',)
    assert cfg.net.mdns is False and cfg.node.slots == 1


def test_hostname_for_is_a_dns_label() -> None:
    name = fb.hostname_for(PEER)
    assert name == "edge-" + PEER.lower()[-8:]
    assert len(name) <= 63 and name.replace("-", "").isalnum()
