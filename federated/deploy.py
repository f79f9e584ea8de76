"""Flower deployment mode: ``flower-superlink``, ``flower-supernode`` and ``flwr run``, with TLS and auth.

Helpers to generate what a loopback or LAN deployment needs (a CA and a
server certificate, SuperNode EC keys in OpenSSH format, a ``FLWR_HOME`` with a
named SuperLink connection), the exact command lines, and :class:`FlowerFleet`,
which starts a SuperLink with ``--enable-supernode-auth`` and registers and
starts SuperNodes, then runs the app in ``federated/app`` and reads the outcome
from the results file the ServerApp writes (never from ``flwr run``'s exit code).

Flower 1.42 serves its Fleet, Control and Runtime APIs over one HTTPS port
(``--port``, 8000 by default); a SuperNode's own runtime API has its own port.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import FederatedLocalError, FlowerRunFailed

__all__ = [
    "APP_DIR",
    "CONNECTION",
    "TlsFiles",
    "NodeKeys",
    "FlowerResult",
    "make_tls",
    "make_supernode_keys",
    "flwr_env",
    "write_connection",
    "superlink_command",
    "supernode_command",
    "register_command",
    "run_command",
    "free_port",
    "run_app",
    "FlowerFleet",
]

APP_DIR = Path(__file__).resolve().parent / "app"
"""The Flower App project (``pyproject.toml``) whose components live in :mod:`federated.flower_app`."""
CONNECTION = "edgenode"
"""Name of the SuperLink connection written into ``FLWR_HOME/config.toml``."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a private CA and a server certificate it signed."""

    ca_cert: Path
    """CA certificate: SuperNodes and ``flwr`` trust it (``--root-certificates``)."""
    server_cert: Path
    """SuperLink certificate (``--ssl-certfile``)."""
    server_key: Path
    """SuperLink private key (``--ssl-keyfile``)."""


@dataclass(frozen=True)
class NodeKeys:
    """A SuperNode's EC P-384 key pair in OpenSSH format (what ``ssh-keygen -t ecdsa -b 384`` writes)."""

    private: Path
    """Private key (``--auth-supernode-private-key``); mode 0600."""
    public: Path
    """Public key (``flwr supernode register``)."""


@dataclass(frozen=True)
class FlowerResult:
    """Outcome of a run, read from the ServerApp's results file."""

    rounds: list[dict[str, float]]
    """Per round: ``round``, ``loss``, ``accuracy``, ``t`` (unix time of central evaluation)."""
    done: bool
    """True when the ServerApp finished every round."""
    seconds: float
    """Wall time from ``flwr run`` to the results file saying done."""
    log: str = ""
    """Output of ``flwr run``."""

    @property
    def final_accuracy(self) -> float:
        if not self.rounds:
            raise FlowerRunFailed("the run produced no evaluated round")
        return float(self.rounds[-1]["accuracy"])

    @property
    def seconds_per_round(self) -> float:
        """Mean seconds between consecutive central evaluations (round 0 is the initial model)."""
        ts = [r["t"] for r in self.rounds]
        if len(ts) < 2:
            raise FlowerRunFailed("need two evaluated rounds to time a round")
        return (ts[-1] - ts[0]) / (len(ts) - 1)


def make_tls(directory: str | Path, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """Write a fresh CA and a server certificate for ``hosts`` (valid 30 days) into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgenode fl CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(d / "ca.crt", d / "server.pem", d / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        files.server_key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return files


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key so that it is never readable by others, not even for a moment.

    The bytes go to a fresh temporary file created with mode 0600 (``O_EXCL``, no
    symlink followed) beside ``path``, are fsynced, and the file is renamed over
    ``path``; a symlink at ``path`` is replaced, never written through.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def make_supernode_keys(directory: str | Path, name: str) -> NodeKeys:
    """Write ``<name>`` and ``<name>.pub`` (EC P-384, OpenSSH format) into ``directory``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    keys = NodeKeys(d / name, d / f"{name}.pub")
    _write_private(
        keys.private,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    keys.public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return keys


def flwr_env(flwr_home: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: private ``FLWR_HOME``, no telemetry, no update checks."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def write_connection(flwr_home: str | Path, address: str, ca_cert: Path | None, name: str = CONNECTION) -> Path:
    """Write ``FLWR_HOME/config.toml`` with the SuperLink connection ``name`` as default."""
    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]", f'address = "{address}"']
    if ca_cert is not None:
        lines.append(f'root-certificates = "{Path(ca_cert).resolve()}"')
    else:
        lines.append("insecure = true")
    path = home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _exe(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def superlink_command(*, tls: TlsFiles, port: int, database: Path | None = None, auth: bool = True) -> list[str]:
    """``flower-superlink`` with TLS (and CLI-managed SuperNode auth) on 127.0.0.1:``port``."""
    cmd = [
        _exe("flower-superlink"),
        "--ssl-ca-certfile", str(tls.ca_cert),
        "--ssl-certfile", str(tls.server_cert),
        "--ssl-keyfile", str(tls.server_key),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--disable-runtime-dependency-installation",
    ]  # fmt: skip
    if database is not None:
        cmd += ["--database", str(database)]
    if auth:
        cmd.append("--enable-supernode-auth")
    return cmd


def supernode_command(
    *, superlink: str, ca_cert: Path, keys: NodeKeys | None, port: int, partition: int, num_partitions: int
) -> list[str]:
    """``flower-supernode`` trusting ``ca_cert``, authenticating with ``keys``, holding one data partition."""
    cmd = [
        _exe("flower-supernode"),
        "--superlink", superlink,
        "--root-certificates", str(ca_cert),
        "--port", str(port),
        "--node-config", f"partition-id={partition} num-partitions={num_partitions}",
    ]  # fmt: skip
    if keys is not None:
        cmd += ["--auth-supernode-private-key", str(keys.private)]
    return cmd


def register_command(public_key: Path, connection: str = CONNECTION) -> list[str]:
    """``flwr supernode register`` (the SuperLink must run with ``--enable-supernode-auth``)."""
    return [_exe("flwr"), "supernode", "register", str(public_key), connection]


def run_command(app_dir: Path, run_config: Mapping[str, Any], connection: str = CONNECTION) -> list[str]:
    """``flwr run`` of ``app_dir`` with ``run_config`` overrides (TOML values)."""
    cfg = " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items())
    return [_exe("flwr"), "run", str(app_dir), connection, "--run-config", cfg]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FlowerRunFailed(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise FlowerRunFailed(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def run_app(
    env: Mapping[str, str],
    workdir: Path,
    *,
    rounds: int = 3,
    strategy: str = "fedavg",
    model: str = "digits",
    timeout: float = 300.0,
    extra: Mapping[str, Any] | None = None,
    watch: Sequence[subprocess.Popen[bytes]] = (),
    connection: str = CONNECTION,
) -> FlowerResult:
    """``flwr run`` the app, then wait (bounded) until its results file says done.

    ``env`` must hold the ``FLWR_HOME`` whose config names ``connection``; the
    ServerApp writes its results under ``workdir`` (same machine as the SuperLink).
    Raises :class:`FlowerRunFailed` when the run does not finish, whatever ``flwr run`` returned.
    """
    results = Path(workdir).resolve() / f"results-{time.time_ns()}.json"
    cfg: dict[str, Any] = {"num-server-rounds": rounds, "strategy": strategy, "model": model,
                           "results-path": str(results)}
    cfg.update(extra or {})
    t0 = time.monotonic()
    cmd = run_command(APP_DIR, cfg, connection)
    try:
        out = subprocess.run(cmd, env=dict(env), capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FlowerRunFailed("flwr run timed out after 120 s") from exc
    log = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
    if out.returncode != 0:  # non-zero is surely a failure; zero proves nothing (read the results)
        raise FlowerRunFailed(f"flwr run exited {out.returncode}: {log[-1000:]}")
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        for p in watch:
            if p.poll() is not None:
                raise FlowerRunFailed(f"a Flower process exited with {p.returncode}; logs in {workdir}")
        if results.exists():
            data = json.loads(results.read_text())
            if data.get("done"):
                return FlowerResult(data["rounds"], True, time.monotonic() - t0, log)
        time.sleep(0.2)
    partial = json.loads(results.read_text())["rounds"] if results.exists() else []
    raise FlowerRunFailed(
        f"run not done after {timeout} s ({len(partial)} rounds evaluated; flwr run exited {out.returncode}): "
        f"{log[-1000:]}"
    )


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process group ``proc`` leads (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@dataclass
class FlowerFleet:
    """A SuperLink and ``num_nodes`` SuperNodes on loopback, TLS and SuperNode auth on; a context manager."""

    workdir: Path
    """Certificates, keys, FLWR_HOME, logs and results go here."""
    num_nodes: int = 2
    """SuperNodes to start, each with partition ``i`` of ``num_nodes``."""
    auth: bool = True
    """CLI-managed SuperNode authentication (register keys, then connect)."""
    startup_timeout: float = 60.0
    """Seconds to wait for the SuperLink to listen."""
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _logs: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.flwr_home = self.workdir / "flwr-home"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = flwr_env(self.flwr_home)
        self.tls: TlsFiles | None = None
        """The CA and server certificate, once started."""

    def _spawn(self, cmd: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("wb")
        self._logs.append(log)
        # its own process group, so that stop() also ends the SuperExec/app processes it spawns
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir, start_new_session=True
        )
        self._procs.append(proc)
        return proc

    def _check(self, cmd: list[str], timeout: float) -> str:
        try:
            out = subprocess.run(cmd, env=self.env, cwd=self.workdir, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise FlowerRunFailed(f"{cmd[:3]} timed out after {timeout} s") from exc
        text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
        if out.returncode != 0:
            raise FlowerRunFailed(f"{' '.join(cmd[:3])} exited {out.returncode}: {text[-2000:]}")
        return text

    def start(self) -> None:
        """Generate TLS files and keys, start the SuperLink, register and start the SuperNodes."""
        if shutil.which(_exe("flower-superlink")) is None:
            raise FederatedLocalError("flower-superlink is not installed (pip install flwr==1.42.0)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        tls = make_tls(self.workdir / "certs")
        self.tls = tls
        write_connection(self.flwr_home, self.address, tls.ca_cert)
        link = self._spawn(superlink_command(tls=tls, port=self.port, auth=self.auth), "superlink.log")
        _wait_port(self.port, link, self.startup_timeout)
        for i in range(self.num_nodes):
            keys = make_supernode_keys(self.workdir / "keys", f"supernode-{i}") if self.auth else None
            if keys is not None:
                self._check(register_command(keys.public), timeout=60)
            cmd = supernode_command(
                superlink=self.address,
                ca_cert=tls.ca_cert,
                keys=keys,
                port=free_port(),
                partition=i,
                num_partitions=self.num_nodes,
            )
            self._spawn(cmd, f"supernode-{i}.log")
        self.wait_online(self.startup_timeout)

    def supernodes(self) -> list[dict[str, Any]]:
        """``flwr supernode list`` as JSON records (``node-id``, ``status``...)."""
        text = self._check([_exe("flwr"), "supernode", "list", CONNECTION, "--format", "json"], timeout=60)
        try:
            nodes: list[dict[str, Any]] = json.loads(text[text.index("{") :])["nodes"]
        except (ValueError, KeyError) as exc:
            raise FlowerRunFailed(f"cannot read `flwr supernode list`: {text[-500:]}") from exc
        return nodes

    def wait_online(self, timeout: float) -> None:
        """Wait (bounded) until ``num_nodes`` SuperNodes are online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(n.get("status") == "online" for n in self.supernodes()) >= self.num_nodes:
                return
            time.sleep(0.5)
        raise FlowerRunFailed(f"fewer than {self.num_nodes} SuperNodes online after {timeout} s")

    def run(self, *, rounds: int = 3, strategy: str = "fedavg", model: str = "digits", timeout: float = 300.0,
            extra: Mapping[str, Any] | None = None) -> FlowerResult:
        """Submit the app, wait (bounded) for its results file to say done, and return the results."""
        return run_app(self.env, self.workdir, rounds=rounds, strategy=strategy, model=model, timeout=timeout,
                       extra=extra, watch=self._procs)

    def stop(self) -> None:
        """Terminate every process started (SuperNodes first), bounded."""
        for p in reversed(self._procs):
            _signal_group(p, signal.SIGTERM)
        for p in reversed(self._procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait(timeout=10)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> FlowerFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
