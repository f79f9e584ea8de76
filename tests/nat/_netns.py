"""A NAT test topology from Linux network namespaces, veth pairs and iptables masquerading.

::

    home A 10.71.1.2 --- 10.71.1.1 [router A, NAT] 10.70.1.2 ---+
                                                                |  10.70.1.1 / 10.70.2.1
                                                        [public 10.70.0.1: relay, bootstrap]
                                                                |
    home B 10.71.2.2 --- 10.71.2.1 [router B, NAT] 10.70.2.2 ---+

The public namespace routes between the two routers' WAN sides (the "internet"); each
router masquerades its home behind its WAN address.  ``nat="eim"`` is plain MASQUERADE,
which keeps the source port where it can (an endpoint-independent mapping: hole punching
can work); ``nat="symmetric"`` is MASQUERADE ``--random-fully``, a fresh random port per
connection (a symmetric NAT: hole punching cannot work).  All addresses are private test
addresses inside the namespaces; nothing leaves the machine.

``Topology.create(...)`` needs root, ``ip`` and ``iptables``; :func:`unavailable` says why not
(for a skip).  ``close()`` deletes every namespace it made (their veths go with them), and
is registered with ``atexit`` too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

__all__ = ["Topology", "unavailable", "PUBLIC_IP", "HOME_IP"]

PUBLIC_IP = "10.70.0.1"
HOME_IP = {"a": "10.71.1.2", "b": "10.71.2.2"}
WAN_IP = {"a": "10.70.1.2", "b": "10.70.2.2"}


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs iproute2 and iptables)"
    name = f"en-probe-{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", name)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _run("ip", "netns", "exec", name, "iptables", "-t", "nat", "-L")
    except (subprocess.SubprocessError, OSError) as exc:
        return f"iptables NAT does not work in a namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    return None


@dataclass
class Topology:
    """The namespaces of one test run: ``ns["public"]``, ``ns["home_a"]``, ``ns["home_b"]`` (and routers)."""

    nat_a: str
    nat_b: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    ns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, nat_a: str = "eim", nat_b: str = "eim") -> Topology:
        topo = cls(nat_a, nat_b)
        atexit.register(topo.close)
        try:
            topo._build()
        except BaseException:
            topo.close()
            raise
        return topo

    def exec_prefix(self, where: str) -> list[str]:
        """Command prefix that runs a program in namespace ``where`` (``public``, ``home_a``, ...)."""
        return ["ip", "netns", "exec", self.ns[where]]

    def _in(self, where: str, *cmd: str) -> None:
        _run(*self.exec_prefix(where), *cmd)

    def _build(self) -> None:
        for where in ("public", "router_a", "router_b", "home_a", "home_b"):
            name = f"en{self.tag}-{where}"
            _run("ip", "netns", "add", name)
            self.ns[where] = name
            self._in(where, "ip", "link", "set", "lo", "up")
        self._in("public", "ip", "addr", "add", f"{PUBLIC_IP}/32", "dev", "lo")
        self._in("public", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for side, nat in (("a", self.nat_a), ("b", self.nat_b)):
            n = 1 if side == "a" else 2
            router, home = f"router_{side}", f"home_{side}"
            self._veth(f"p{n}{self.tag}", "public", f"10.70.{n}.1/24", f"w{n}{self.tag}", router, f"{WAN_IP[side]}/24")
            self._veth(f"l{n}{self.tag}", router, f"10.71.{n}.1/24", f"h{n}{self.tag}", home, f"{HOME_IP[side]}/24")
            self._in(router, "ip", "route", "add", "default", "via", f"10.70.{n}.1")
            self._in(home, "ip", "route", "add", "default", "via", f"10.71.{n}.1")
            self._in(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            masq = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", f"w{n}{self.tag}", "-j", "MASQUERADE"]
            if nat == "symmetric":
                masq.append("--random-fully")
            elif nat != "eim":
                raise ValueError(f"nat must be 'eim' or 'symmetric', not {nat!r}")
            self._in(router, *masq)
            # a home router: nothing from outside reaches the home (or the router) unless it answers
            # a mapping; unsolicited packets are dropped silently, as home routers do
            for chain in ("FORWARD", "INPUT"):
                self._in(router, "iptables", "-A", chain, "-i", f"w{n}{self.tag}", "-m", "conntrack",
                         "!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP")

    def _veth(self, a: str, ns_a: str, ip_a: str, b: str, ns_b: str, ip_b: str) -> None:
        _run("ip", "link", "add", a, "netns", self.ns[ns_a], "type", "veth", "peer", "name", b, "netns", self.ns[ns_b])
        self._in(ns_a, "ip", "addr", "add", ip_a, "dev", a)
        self._in(ns_b, "ip", "addr", "add", ip_b, "dev", b)
        self._in(ns_a, "ip", "link", "set", a, "up")
        self._in(ns_b, "ip", "link", "set", b, "up")

    def close(self) -> None:
        """Delete the namespaces (idempotent); processes still in them should be gone first."""
        for name in list(self.ns.values()):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.ns.clear()
