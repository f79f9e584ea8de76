"""Where the CPU of the libp2p path goes: per request, per gossip message per host, idle nodes.

Every host is its own OS process (``benchmarks/_net_worker.py``, one
``edgenode.net.p2p.P2PTransport`` on 127.0.0.1).  For each size in ``--hosts`` the hosts
form a star: host 0 is the hub, hosts 1.. are leaves dialled only to the hub; all
subscribe to one topic with a trivial validator (nodes validate every message).
CPU is utime+stime from ``/proc/<pid>/stat`` (all threads) over the measured window,
minus the same process's idle CPU rate (measured over an equally long idle window just
before) times the window's length.

* ``net.request_cpu_ms``: CPU per 64-byte echo request/response, both ends together
  (leaf 1 asks the hub), median over ``--repeats``; ``net.request_rtt_p50_ms`` / ``_p99_ms``.
* ``net.gossip_cpu_ms_per_msg``: leaf 1 publishes M 200-byte messages at a steady rate;
  CPU per message of a receiving leaf (median over the receiving leaves; with 2 hosts the
  hub is the only receiver), and ``..._hub`` / ``..._publisher``; ``delivered`` in params.
* ``net.host_idle_cpu_pct``: median idle CPU of one host (% of one core) in the star.
* ``node.idle_cpu_pct``: 10 idle ``edgenode run`` nodes (star bootstrap), total CPU of all
  processes as % of one core, after a warm-up.

``--profile`` then repeats the request run of the smallest size and the gossip run of the
largest with py-spy (``record --threads --nonblocking --format raw``) attached to the
request server and client, the hub, the publisher and a receiving leaf, and prints a breakdown by category
(see :func:`categorise`) and the top leaf functions to stderr (or ``--profile-out DIR``,
which also keeps the raw samples).  Profiled runs emit no figures (py-spy costs CPU).

    python benchmarks/bench_net_profile.py --quick      # smoke: 2 and 5 hosts, 4 nodes, <1 min
    python benchmarks/bench_net_profile.py              # 2, 5, 10 hosts, a few minutes
    python benchmarks/bench_net_profile.py --profile --profile-out /tmp/prof
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import emit, median, percentile, start_node, stop_nodes  # noqa: E402

WORKER = HERE / "_net_worker.py"
TICK = os.sysconf("SC_CLK_TCK")
REQUEST_BYTES = 64
GOSSIP_BYTES = 200
GOSSIP_RATE = 20.0
DELIVERY_WAIT = 15.0


# -- CPU accounting -------------------------------------------------------------------
def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime + stime, stime) of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[12]) / TICK


Snapshot = tuple[float, dict[int, tuple[float, float]]]


def snapshot(pids: Iterable[int]) -> Snapshot:
    return time.monotonic(), {pid: cpu_seconds(pid) for pid in pids}


def used(before: Snapshot, after: Snapshot, pid: int) -> float:
    """CPU seconds of ``pid`` between two snapshots."""
    return after[1][pid][0] - before[1][pid][0]


def rates(before: Snapshot, after: Snapshot) -> dict[int, float]:
    """CPU seconds per second of each process between two snapshots."""
    return {pid: used(before, after, pid) / (after[0] - before[0]) for pid in before[1]}


def sys_share(before: Snapshot, after: Snapshot) -> float:
    """The kernel's share (stime) of all these processes' CPU between two snapshots."""
    total = sum(used(before, after, p) for p in before[1])
    kernel = sum(after[1][p][1] - before[1][p][1] for p in before[1])
    return round(kernel / total, 3) if total > 0 else 0.0


T0 = time.monotonic()


def progress(what: str) -> None:
    """A progress line on stderr (stdout carries only the JSON figures)."""
    sys.stderr.write(f"[{time.monotonic() - T0:6.1f} s] {what}\n")
    sys.stderr.flush()


def load() -> float:
    return round(os.getloadavg()[0], 2)


# -- worker processes -----------------------------------------------------------------
class Host:
    """Driver side of one ``_net_worker.py`` process."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.pid = int(info["pid"])
        self.peer_id = str(info["peer_id"])
        self.addr = str(info["addr"])
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, log: Path) -> Host:
        err = await asyncio.to_thread(open, log, "wb")  # handed to the child, closed below
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, limit=1 << 24,
            )
        finally:
            err.close()
        assert proc.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"worker died before ready: {(await asyncio.to_thread(log.read_text))[-2000:]}")
                msg = json.loads(line)
                if msg.get("event") == "ready":
                    return cls(proc, msg)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            fut = self._replies.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionError("worker exited"))

    async def call(self, cmd: str, timeout: float = 120.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next] = fut
        self.proc.stdin.write((json.dumps({"id": self._next, "cmd": cmd, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            reply = await fut
        if not reply.get("ok"):
            raise RuntimeError(f"{cmd} failed: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.write(b'{"cmd": "stop"}\n')
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


async def star(n: int, logs: Path) -> list[Host]:
    """``n`` hosts, leaves dialled to host 0, all subscribed; returns once gossip reaches everyone."""
    hosts = list(await asyncio.gather(*(Host.spawn(logs / f"host{i}.log") for i in range(n))))
    try:
        await asyncio.gather(*(h.call("connect", addr=hosts[0].addr) for h in hosts[1:]))
        await asyncio.gather(*(h.call("subscribe") for h in hosts))
        deadline = time.monotonic() + 60
        while True:  # warm-up: until one message from leaf 1 reaches every other host (meshes formed)
            await asyncio.gather(*(h.call("reset_count") for h in hosts))
            await hosts[1].call("publish", data=os.urandom(GOSSIP_BYTES).hex())
            others = [h for h in hosts if h is not hosts[1]]
            got = await asyncio.gather(*(h.call("wait_count", count=1, wait=2.0) for h in others))
            if all(g["count"] >= 1 for g in got):
                return hosts
            if time.monotonic() > deadline:
                raise RuntimeError(f"gossip mesh of {n} hosts did not form in 60 s")
    except BaseException:
        await asyncio.gather(*(h.stop() for h in hosts))
        raise


async def idle_rates(hosts: Sequence[Host], seconds: float) -> dict[int, float]:
    before = snapshot(h.pid for h in hosts)
    await asyncio.sleep(seconds)
    return rates(before, snapshot(h.pid for h in hosts))


# -- py-spy ---------------------------------------------------------------------------
class Profiler:
    """py-spy attached to some processes for one window; raw folded stacks per role."""

    def __init__(self, out_dir: Path, label: str, targets: dict[str, int], rate: int, extra: Sequence[str]) -> None:
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if exe is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.exe = exe
        self.files = {role: out_dir / f"{label}-{role}.raw" for role in targets}
        self.targets = targets
        self.rate = rate
        self.extra = list(extra)
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Profiler:
        for role, pid in self.targets.items():
            self.procs.append(await asyncio.create_subprocess_exec(
                self.exe, "record", "--pid", str(pid), "--threads", "--nonblocking", "--full-filenames",
                "--format", "raw", "--rate", str(self.rate), "--output", str(self.files[role]), *self.extra,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            ))
        await asyncio.sleep(1.0)  # py-spy attaches
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for p in self.procs:
            await p.wait()


Stack = tuple[str, ...]

# (category, substrings of a frame's file path); the first match wins, so order matters.
SPECIFIC: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("protobuf", ("/google/protobuf/", "_pb2.py")),
    ("asyncio<->trio bridge", ("edgenode/net/_p2p_bridge.py",)),
    ("yamux/muxer", ("/libp2p/stream_muxer/",)),
    ("noise crypto", ("/libp2p/security/", "/libp2p/crypto/", "/cryptography/", "/nacl/", "/coincurve/",
                      "/Crypto/", "/noise/")),
    ("multistream-select", ("/libp2p/protocol_muxer/",)),
    ("pubsub/gossipsub", ("/libp2p/pubsub/",)),
    ("peer ids/records", ("/libp2p/peer/", "/libp2p/records/", "/libp2p/identity/", "/multihash/", "/base58/")),
    ("multiaddr", ("/multiaddr/",)),
    ("libp2p network/host/io", ("/libp2p/",)),
    ("edgenode app/handler", ("/edgenode/", "/benchmarks/")),
)
# Charged only when no specific frame is on the stack (the caller pays for what it calls).
GENERIC: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("/logging/",)),
    ("trio scheduling", ("/trio/", "/outcome/", "/sniffio/")),
    ("asyncio loop", ("/asyncio/", "/selectors.py")),
)
SOCKET_IO = "socket send/recv syscalls"
WAKEUP = "thread wakeups (bridge)"
IDLE = "idle wait (excluded)"
# Innermost frames that are (by function name and path) a blocking wait, a socket syscall
# or a cross-thread wakeup: py-spy --nonblocking cannot always tell a thread in epoll_wait idle.
LEAF_RULES: tuple[tuple[str, str, str], ...] = (
    ("get_events", "/trio/_core/_io_epoll.py", IDLE),
    ("select", "/selectors.py", IDLE),
    ("wait", "/threading.py", IDLE),
    ("_nonblocking_helper", "/trio/_socket.py", SOCKET_IO),
    ("wrapper", "/trio/_socket.py", SOCKET_IO),
    ("receive_some", "/trio/_highlevel_socket.py", SOCKET_IO),
    ("send_all", "/trio/_highlevel_socket.py", SOCKET_IO),
    ("_write_to_self", "/asyncio/selector_events.py", WAKEUP),
    ("_read_from_self", "/asyncio/selector_events.py", WAKEUP),
    ("wakeup_thread_and_signal_safe", "/trio/_core/_wakeup_socketpair.py", WAKEUP),
    ("drain", "/trio/_core/_wakeup_socketpair.py", WAKEUP),
)


# Event-loop frames: what runs above them is one task (or callback); what lies below them is
# the thread's entry point (e.g. the bridge's thread target), which must not take the blame.
SCHEDULERS: tuple[tuple[str, str, str], ...] = (
    ("unrolled_run", "/trio/_core/_run.py", "trio scheduling"),
    ("_run_once", "/asyncio/base_events.py", "asyncio loop"),
)


def frame_path(frame: str) -> str:
    """``func (path:line)`` -> path."""
    inner = frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else ""
    return inner.rsplit(":", 1)[0]


def frame_func(frame: str) -> str:
    return frame[: frame.rfind(" (")] if " (" in frame else frame


def _match(frame: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    path = frame_path(frame)
    for name, needles in table:
        if any(n in path for n in needles):
            return name
    return None


def frame_category(frame: str) -> str | None:
    return _match(frame, SPECIFIC) or _match(frame, GENERIC)


def task_frames(stack: Stack) -> tuple[Stack, str | None]:
    """The frames above the innermost event-loop frame, and that loop's category."""
    for i in range(len(stack) - 1, -1, -1):
        func, path = frame_func(stack[i]).rsplit(".", 1)[-1], frame_path(stack[i])
        for name, where, cat in SCHEDULERS:
            if func == name and where in path:
                return stack[i + 1 :], cat
    return stack, None


def categorise(stack: Stack) -> str:
    """The category of one sample from its frames (outermost first), by file path.

    The innermost frame decides if it is a wait, a socket syscall or a thread wakeup.
    Otherwise only the frames of the running task count (those above trio's or asyncio's
    loop): the innermost of a specific layer (a py-libp2p part, crypto, protobuf, the
    bridge, edgenode) wins, so stdlib and trio helpers are charged to their caller; a task
    with none of those is logging, trio or asyncio; no task at all is the loop itself.
    """
    if stack:
        leaf, path = frame_func(stack[-1]).rsplit(".", 1)[-1], frame_path(stack[-1])
        for func, where, cat in LEAF_RULES:
            if leaf == func and where in path:
                return cat
    stack, loop = task_frames(stack)
    if not stack and loop is not None:
        return loop
    for frame in reversed(stack):
        cat = _match(frame, SPECIFIC)
        if cat is not None:
            return cat
    for frame in reversed(stack):
        cat = _match(frame, GENERIC)
        if cat is not None:
            return cat
    return "other"


def short(frame: str) -> str:
    """``func (…/site-packages/libp2p/x.py:12)`` -> ``func (libp2p/x.py)``."""
    path = frame_path(frame)
    for marker in ("site-packages/", str(REPO) + "/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    return f"{frame_func(frame)} ({path})"


def read_raw(path: Path) -> collections.Counter[Stack]:
    """py-spy raw output: ``thread (tid): name;frame;...;frame COUNT`` per line."""
    samples: collections.Counter[Stack] = collections.Counter()
    if not path.exists():
        return samples
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            samples[tuple(head.split(";"))] += int(count)
    return samples


def breakdown(samples: collections.Counter[Stack], top: int = 15) -> dict[str, Any]:
    """Shares (% of busy samples) by category, thread, leaf function and innermost py-libp2p function."""
    self_cat: collections.Counter[str] = collections.Counter()
    incl_cat: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    libp2p: collections.Counter[str] = collections.Counter()
    idle = 0
    for stack, n in samples.items():
        thread, frames = stack[0], stack[1:]
        cat = categorise(frames)
        if cat == IDLE:
            idle += n
            continue
        name = thread.split(": ", 1)[-1]
        threads["trio (libp2p) thread" if name.startswith("edgenode-p2p") else name] += n
        self_cat[cat] += n
        for c in {frame_category(f) for f in task_frames(frames)[0]} - {None}:
            incl_cat[str(c)] += n
        if frames:
            leaves[short(frames[-1])] += n
        deepest = next((f for f in reversed(frames) if "/libp2p/" in frame_path(f)), None)
        if deepest is not None:
            libp2p[short(deepest)] += n
    total = sum(self_cat.values())

    def shares(c: collections.Counter[str], k: int | None = None) -> list[tuple[str, float]]:
        return [(key, round(100 * v / total, 1)) for key, v in c.most_common(k)] if total else []

    return {
        "busy_samples": total,
        "idle_wait_samples": idle,
        "threads": shares(threads),
        "categories": shares(self_cat),
        "categories_inclusive": shares(incl_cat),
        "top_leaf_functions": shares(leaves, top),
        "top_libp2p_functions": shares(libp2p, top),
    }


def write_breakdown(title: str, b: dict[str, Any], out: TextIO) -> None:
    busy, idle = b["busy_samples"], b["idle_wait_samples"]
    out.write(f"\n== {title}: {busy} busy samples ({idle} in epoll/select waits left out) ==\n")
    out.write("threads: " + ", ".join(f"{k} {v}%" for k, v in b["threads"]) + "\n")
    inclusive = dict(b["categories_inclusive"])
    out.write(f"{'category':<28} {'self %':>7} {'incl %':>7}\n")
    for k, v in b["categories"]:
        out.write(f"{k:<28} {v:>7} {inclusive.get(k, '')!s:>7}\n")
    out.write("top leaf functions (% of samples):\n")
    for k, v in b["top_leaf_functions"]:
        out.write(f"  {v:>5}  {k}\n")
    out.write("top innermost py-libp2p functions (incl. the stdlib/C they call):\n")
    for k, v in b["top_libp2p_functions"]:
        out.write(f"  {v:>5}  {k}\n")
    out.flush()


# -- figures --------------------------------------------------------------------------
async def request_figures(
    hosts: list[Host], requests: int, repeats: int, idle_min: float, prof: Profiler | None = None
) -> None:
    client, server = hosts[1], hosts[0]
    pids = (client.pid, server.pid)
    start_load = load()
    t0 = time.monotonic()
    await client.call("requests", peer=server.peer_id, count=50, size=REQUEST_BYTES)  # warm-up
    window = min(30.0, max(idle_min, (time.monotonic() - t0) * requests / 50))
    cpu_ms: list[float] = []
    kernel: list[float] = []
    rtt: list[float] = []
    for _ in range(1 if prof else repeats):
        idle = await idle_rates([client, server], window)
        async with prof if prof else contextlib.nullcontext():
            before = snapshot(pids)
            reply = await client.call("requests", peer=server.peer_id, count=requests, size=REQUEST_BYTES)
            after = snapshot(pids)
        dt = after[0] - before[0]
        busy = sum(used(before, after, p) - idle[p] * dt for p in pids)
        cpu_ms.append(busy * 1000 / requests)
        kernel.append(sys_share(before, after))
        rtt.extend(reply["rtt_ms"])
    if prof:
        return
    params = {
        "transport": "p2p", "hosts": len(hosts), "processes": 2, "requests": requests, "repeats": repeats,
        "payload_bytes": REQUEST_BYTES, "load": start_load,
    }
    emit("net.request_cpu_ms", round(median(cpu_ms), 3), "ms", **params,
         runs=[round(c, 3) for c in cpu_ms], idle_window_s=round(window, 1), sys_share=median(kernel))
    emit("net.request_rtt_p50_ms", round(percentile(rtt, 50), 3), "ms", **params)
    emit("net.request_rtt_p99_ms", round(percentile(rtt, 99), 3), "ms", **params)


async def gossip_figures(hosts: list[Host], messages: int, prof: Profiler | None = None) -> None:
    hub, publisher = hosts[0], hosts[1]
    receivers = [h for h in hosts if h is not publisher]
    leaves = [h for h in receivers if h is not hub] or [hub]
    pids = [h.pid for h in hosts]
    start_load = load()
    window = messages / GOSSIP_RATE
    idle = await idle_rates(hosts, window + 0.5)
    await asyncio.gather(*(h.call("reset_count") for h in hosts))
    async with prof if prof else contextlib.nullcontext():
        before = snapshot(pids)
        await publisher.call("publish_many", count=messages, size=GOSSIP_BYTES, rate=GOSSIP_RATE,
                             timeout=window * 4 + 60)
        got = await asyncio.gather(
            *(h.call("wait_count", count=messages, wait=DELIVERY_WAIT) for h in receivers)
        )
        after = snapshot(pids)
    if prof:
        return
    dt = after[0] - before[0]
    per = {p: (used(before, after, p) - idle[p] * dt) * 1000 / messages for p in pids}
    delivered = sum(g["count"] for g in got) / (messages * len(receivers))
    params = {
        "transport": "p2p", "hosts": len(hosts), "processes": len(hosts), "topology": "star",
        "messages": messages, "payload_bytes": GOSSIP_BYTES, "rate_per_s": GOSSIP_RATE,
        "delivered": round(delivered, 4), "load": start_load,
    }
    leaf_cpu = [per[h.pid] for h in leaves]
    emit("net.gossip_cpu_ms_per_msg", round(median(leaf_cpu), 3), "ms", **params,
         receivers="leaves" if leaves[0] is not hub else "hub (only receiver)",
         leaves=[round(c, 2) for c in leaf_cpu], all_hosts_ms=round(sum(per.values()), 2),
         sys_share=sys_share(before, after), got=[g["count"] for g in got])
    emit("net.gossip_cpu_ms_per_msg_hub", round(per[hub.pid], 3), "ms", **params)
    emit("net.gossip_cpu_ms_per_msg_publisher", round(per[publisher.pid], 3), "ms", **params)
    emit("net.host_idle_cpu_pct", round(100 * median(list(idle.values())), 2), "%", **params,
         hub_pct=round(100 * idle[hub.pid], 2), window_s=round(window + 0.5, 1))


def node_idle_figure(nodes: int, warm_s: float, window_s: float, root: Path) -> None:
    start_load = load()
    first, addr = start_node(root / "n0", [])
    procs = [first]
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for proc, _ in pool.map(lambda i: start_node(root / f"n{i}", [addr]), range(1, nodes)):
                procs.append(proc)
        progress(f"{nodes} nodes started")
        time.sleep(warm_s)
        before = snapshot(p.pid for p in procs)
        time.sleep(window_s)
        per = rates(before, snapshot(p.pid for p in procs))
    finally:
        stop_nodes(procs)
    emit("node.idle_cpu_pct", round(100 * sum(per.values()), 2), "% of one core", transport="p2p", hosts=nodes,
         processes=nodes, topology="star bootstrap", warm_up_s=warm_s, window_s=window_s, load=start_load,
         per_node_median_pct=round(100 * median(list(per.values())), 2))


async def run_size(
    n: int, args: argparse.Namespace, root: Path, prof_dir: Path | None, first: bool, last: bool
) -> None:
    """All figures of one star size; with profiling, the request profile on the smallest size
    (2 hosts: nothing else on the server) and the gossip profile on the largest."""
    logs = root / f"hosts{n}"
    logs.mkdir()
    progress(f"{n} hosts: starting")
    hosts = await star(n, logs)
    progress(f"{n} hosts: star formed")
    try:
        await request_figures(hosts, args.requests, args.repeats, args.idle_min)
        progress(f"{n} hosts: requests done")
        await gossip_figures(hosts, args.messages)
        progress(f"{n} hosts: gossip done")
        if prof_dir is not None and first:
            server, client = hosts[0], hosts[1]
            prof = Profiler(prof_dir, f"request-h{n}", {"server": server.pid, "client": client.pid}, args.rate,
                            args.spy_args.split())
            await request_figures(hosts, args.requests * 6, 1, args.idle_min, prof)
            progress(f"{n} hosts: request profile done")
        if prof_dir is not None and last:
            leaf = hosts[2] if n > 2 else hosts[0]
            targets = {"leaf": leaf.pid, "hub": hosts[0].pid, "publisher": hosts[1].pid} if n > 2 else \
                {"hub": hosts[0].pid, "publisher": hosts[1].pid}
            prof = Profiler(prof_dir, f"gossip-h{n}", targets, args.rate, args.spy_args.split())
            await gossip_figures(hosts, args.messages * 3, prof)
            progress(f"{n} hosts: gossip profile done")
    finally:
        await asyncio.gather(*(h.stop() for h in hosts))


def report_profiles(prof_dir: Path, to_files: bool) -> None:
    """Breakdown of every ``*.raw`` in ``prof_dir``: to stderr, or to breakdown.txt/.json there."""
    summary = {raw.stem: breakdown(read_raw(raw)) for raw in sorted(prof_dir.glob("*.raw"))}
    if not to_files:
        for title, b in summary.items():
            write_breakdown(title, b, sys.stderr)
        return
    with open(prof_dir / "breakdown.txt", "w") as f:
        for title, b in summary.items():
            write_breakdown(title, b, f)
    (prof_dir / "breakdown.json").write_text(json.dumps(summary, indent=1))
    sys.stderr.write(f"profile breakdown in {prof_dir / 'breakdown.txt'}\n")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 and 5 hosts, fewer messages")
    ap.add_argument("--hosts", help="comma-separated star sizes (default 2,5,10; --quick 2,5)")
    ap.add_argument("--requests", type=int, help="requests per repeat (default 500; --quick 150)")
    ap.add_argument("--repeats", type=int, help="request repeats, median taken (default 3; --quick 1)")
    ap.add_argument("--messages", type=int, help="gossip messages (default 200; --quick 40)")
    ap.add_argument("--nodes", type=int, help="idle edgenode run nodes (default 10; --quick 4)")
    ap.add_argument("--no-nodes", action="store_true", help="skip node.idle_cpu_pct")
    ap.add_argument("--profile", action="store_true", help="also sample with py-spy and print a breakdown")
    ap.add_argument("--profile-out", type=Path, help="directory for the raw samples and breakdown.txt/json")
    ap.add_argument("--rate", type=int, default=400, help="py-spy samples per second (default 400)")
    ap.add_argument("--spy-args", default="--gil",
                    help="more py-spy record arguments (default --gil: only samples holding the GIL, i.e. "
                    "Python CPU; '' also counts threads inside syscalls or waiting for the GIL)")
    args = ap.parse_args()
    args.hosts = [int(x) for x in (args.hosts or ("2,5" if args.quick else "2,5,10")).split(",")]
    args.requests = args.requests or (150 if args.quick else 500)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.messages = args.messages or (40 if args.quick else 200)
    args.nodes = args.nodes or (4 if args.quick else 10)
    args.idle_min = 1.0 if args.quick else 2.0
    if min(args.hosts) < 2:
        raise SystemExit("--hosts: at least 2")
    with tempfile.TemporaryDirectory(prefix="bench-net-profile-") as tmp:
        root = Path(tmp)
        prof_dir: Path | None = None
        if args.profile:
            prof_dir = args.profile_out or root / "profile"
            prof_dir.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(args.hosts):
            await run_size(n, args, root, prof_dir, first=i == 0, last=i == len(args.hosts) - 1)
        if not args.no_nodes:
            await asyncio.to_thread(node_idle_figure, args.nodes, 2.0 if args.quick else 10.0,
                                    4.0 if args.quick else 20.0, root)
        if prof_dir is not None:
            report_profiles(prof_dir, args.profile_out is not None)


if __name__ == "__main__":
    asyncio.run(main())
