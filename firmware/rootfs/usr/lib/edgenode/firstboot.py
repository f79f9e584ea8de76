"""First-boot provisioning of an edgenode device (run as root by edgenode-firstboot.service).

On every boot, idempotently:

1. create the node key in the node home if there is none (``edgenode init``), owned by the
   service user, and derive the hostname ``edge-<last 8 characters of the peer id>``;
2. read ``edgenode.toml`` from the boot partition (the FAT partition a user can edit from any
   computer) if present and apply it:

   - ``[net]`` and ``[node]``: written to the node's ``config.toml`` after validating them
     with edgenode's own config loader (a typo stops provisioning with a clear message);
   - ``[swarm] name``: exported to the service as ``EDGENODE_SWARM`` in /etc/default/edgenode;
   - ``[wifi] ssid, psk, country``: a wpa_supplicant config for wlan0 (the passphrase is
     stored hashed) plus a DHCP network for systemd-networkd;
   - ``[ssh] authorized_keys``: root's authorized keys (SSH has no password login);
   - ``[system] hostname``: overrides the derived hostname.

It prints one summary line (``edgenode-firstboot: ...``). ``--root`` lets tests run it against
a scratch directory; exit status 1 and a one-line message on a bad ``edgenode.toml``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Plan",
    "ProvisionError",
    "Provisioned",
    "hostname_for",
    "main",
    "plan",
    "provision",
    "render_config",
    "wpa_config",
]

KEY_FILE = "node.key"
_SWARM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TOP_KEYS = {"net", "node", "swarm", "wifi", "ssh", "system"}


class ProvisionError(Exception):
    """A bad ``edgenode.toml`` or a failed provisioning step (message is user-facing)."""


@dataclass(frozen=True)
class Provisioned:
    """What a provisioning run did."""

    peer_id: str
    """The node's libp2p peer id."""
    hostname: str
    """The hostname written to /etc/hostname."""
    swarm: str
    """The swarm name, or ``""`` when none was configured."""
    wifi: bool
    """Whether a Wi-Fi network was configured."""
    created_key: bool
    """Whether this run generated the node key."""


def hostname_for(peer_id: str) -> str:
    """``edge-`` plus the last 8 characters of the peer id, lower-cased (a valid DNS label)."""
    tail = re.sub(r"[^a-z0-9]", "", peer_id.lower())[-8:]
    return f"edge-{tail}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ProvisionError(f"unsupported value {value!r}")


def render_config(tables: dict[str, dict[str, Any]]) -> str:
    """The node's ``config.toml`` text for the ``[net]``/``[node]`` tables given."""
    lines = ["# Written by edgenode-firstboot from the boot partition's edgenode.toml.", ""]
    for name in ("net", "node"):
        table = tables.get(name)
        if table is None:
            continue
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in sorted(table.items()))
        lines.append("")
    return "\n".join(lines)


def wpa_config(ssid: str, passphrase: str, country: str) -> str:
    """A wpa_supplicant.conf for one WPA2-PSK network, the passphrase stored as its hash."""
    if not 8 <= len(passphrase) <= 63:
        raise ProvisionError("wifi.psk must be 8 to 63 characters")
    if not 1 <= len(ssid.encode()) <= 32:
        raise ProvisionError("wifi.ssid must be 1 to 32 bytes")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ProvisionError("wifi.country must be a two-letter country code such as DE")
    psk = hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()
    return (
        "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\n"
        f"country={country}\n"
        "update_config=0\n\n"
        "network={\n"
        f"    ssid={json.dumps(ssid)}\n"
        f"    psk={psk}\n"
        "    key_mgmt=WPA-PSK\n"
        "}\n"
    )


def _load_boot_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"{path}: {exc}") from exc
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProvisionError(f"{path}: unknown tables {sorted(unknown)} (known: {sorted(_TOP_KEYS)})")
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ProvisionError(f"{path}: [{name}] must be a table")
    return data


def _validate_node_tables(tables: dict[str, dict[str, Any]], where: Path) -> None:
    """Check [net]/[node] with edgenode's own loader, so the node will accept them."""
    try:
        from edgenode.config import NodeConfig, from_table
        from edgenode.errors import EdgenodeError
    except ImportError as exc:  # provisioning runs with the node's python; say so if it does not
        raise ProvisionError(f"cannot import edgenode to validate {where}: {exc}") from exc
    try:
        from_table(NodeConfig, tables, str(where))
    except EdgenodeError as exc:
        raise ProvisionError(str(exc)) from exc


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _chown_tree(path: Path, owner: str) -> None:
    try:
        pw = pwd.getpwnam(owner)
    except KeyError as exc:
        raise ProvisionError(f"user {owner!r} does not exist (is edgenode's sysusers.d file installed?)") from exc
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid)


def _edgenode(cmd: list[str], *args: str) -> str:
    try:
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, check=True, timeout=300)
    except subprocess.CalledProcessError as exc:
        raise ProvisionError(f"{' '.join(args[:1])} failed: {exc.stderr.strip() or exc.returncode}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"cannot run edgenode: {exc}") from exc
    return done.stdout.strip()


@dataclass(frozen=True)
class Plan:
    """A validated ``edgenode.toml``: what provisioning will write."""

    node_tables: dict[str, dict[str, Any]]
    """``[net]``/``[node]`` for the node's config.toml (empty: leave config.toml alone)."""
    swarm: str
    """Swarm name, or ``""``."""
    wpa: str
    """wpa_supplicant config text, or ``""`` for no Wi-Fi."""
    authorized_keys: tuple[str, ...]
    """SSH public keys for root."""
    hostname: str
    """Hostname override, or ``""`` to derive it from the peer id."""


def plan(conf: dict[str, Any], where: Path) -> Plan:
    """Validate a parsed ``edgenode.toml`` completely before anything is written."""
    node_tables = {k: conf[k] for k in ("net", "node") if k in conf}
    if node_tables:
        _validate_node_tables(node_tables, where)
    swarm = str(conf.get("swarm", {}).get("name", ""))
    if swarm and not _SWARM_RE.match(swarm):
        raise ProvisionError(f"swarm.name {swarm!r}: use letters, digits, '.', '_' or '-' (at most 63)")
    wifi = conf.get("wifi")
    wpa = wpa_config(str(wifi.get("ssid", "")), str(wifi.get("psk", "")), str(wifi.get("country", ""))) if wifi else ""
    keys = conf.get("ssh", {}).get("authorized_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k.startswith(("ssh-", "ecdsa-")) for k in keys):
        raise ProvisionError("ssh.authorized_keys must be a list of public keys ('ssh-ed25519 AAAA...')")
    hostname = str(conf.get("system", {}).get("hostname", ""))
    if hostname and not _HOST_RE.match(hostname):
        raise ProvisionError(f"system.hostname {hostname!r} is not a valid host name")
    return Plan(node_tables, swarm, wpa, tuple(keys), hostname)


def provision(
    root: Path, boot_config: Path, home: Path, edgenode: list[str], owner: str | None, apply_hostname: bool
) -> Provisioned:
    """Provision the system under ``root``; ``home`` and ``boot_config`` are paths inside it."""
    todo = plan(_load_boot_config(root / boot_config.relative_to("/")), boot_config)
    node_home = root / home.relative_to("/")
    created = not (node_home / KEY_FILE).exists()
    if created:
        _edgenode(edgenode, "init", "--home", str(node_home))
    peer_id = _edgenode(edgenode, "id", "--home", str(node_home))

    if todo.node_tables:
        _write(node_home / "config.toml", render_config(todo.node_tables), 0o600)
    if todo.swarm:
        _write(root / "etc/default/edgenode", f"# Written by edgenode-firstboot.\nEDGENODE_SWARM={todo.swarm}\n")
    if todo.wpa:
        _write(root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf", todo.wpa, 0o600)
        _write(root / "etc/systemd/network/25-wlan0.network", "[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n")
        wants = root / "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
        wants.parent.mkdir(parents=True, exist_ok=True)
        if not wants.is_symlink():
            wants.symlink_to("/lib/systemd/system/wpa_supplicant@.service")
        if apply_hostname:  # live system: start it on this boot too
            subprocess.run(["systemctl", "--no-block", "start", "wpa_supplicant@wlan0.service"], check=False)
    if todo.authorized_keys:
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(ssh_dir / "authorized_keys", "\n".join(todo.authorized_keys) + "\n", 0o600)

    hostname = todo.hostname or hostname_for(peer_id)
    _write(root / "etc/hostname", hostname + "\n")
    hosts = root / "etc/hosts"
    old = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
    kept = [line for line in old if not line.startswith("127.0.1.1")]
    _write(hosts, "\n".join([*kept, f"127.0.1.1\t{hostname}"]) + "\n")
    if apply_hostname:
        subprocess.run(["hostname", hostname], check=False)
        # Images ship without SSH host keys (every card would share them); make this device's own.
        if (root / "etc/ssh/sshd_config").exists() and not any((root / "etc/ssh").glob("ssh_host_*_key")):
            subprocess.run(["ssh-keygen", "-A"], check=False)

    if owner is not None:
        _chown_tree(node_home, owner)
    return Provisioned(peer_id, hostname, todo.swarm, bool(todo.wpa), created)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgenode-firstboot", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/"), help="system root to provision (default /)")
    p.add_argument("--boot-config", type=Path, default=Path("/boot/firmware/edgenode.toml"))
    p.add_argument("--home", type=Path, default=Path("/var/lib/edgenode"), help="node home (inside --root)")
    p.add_argument("--owner", default="edgenode", help="user to own the node home; '' to leave as is")
    p.add_argument(
        "--edgenode", default=f"{sys.executable} -m edgenode", help="the edgenode command (default: this python)"
    )
    args = p.parse_args(argv)
    live = args.root.resolve() == Path("/")
    try:
        done = provision(
            args.root, args.boot_config, args.home, args.edgenode.split(), args.owner or None, apply_hostname=live
        )
    except ProvisionError as exc:
        print(f"edgenode-firstboot: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"edgenode-firstboot: peer id {done.peer_id} hostname {done.hostname} swarm {done.swarm or '-'} "
        f"wifi {'yes' if done.wifi else 'no'} key {'created' if done.created_key else 'kept'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
