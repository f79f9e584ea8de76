"""``[net]`` bounds reach the libp2p transport that ``edgenode run`` builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgenode.cli._run import p2p_config
from edgenode.config import load_config
from edgenode.errors import LocalError
from edgenode.protocol import STATUS_PROTOCOL, TASK_PROTOCOL


def write(tmp_path: Path, text: str) -> Path:
    """A node home whose config.toml is ``text``."""
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


def test_net_and_tables_bounds_become_transport_limits(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[net]
max_inflight_per_peer = 8
max_concurrent_per_channel = 4
max_inbound_streams_per_peer = 3
max_request_bytes = 2048
[tables]
spec_max_bytes = 100000
"""))
    p2p = p2p_config(cfg)
    limits = dict(p2p.request_limits)
    assert (p2p.max_inflight_per_peer, p2p.max_concurrent_per_channel, p2p.max_inbound_streams_per_peer) == (8, 4, 3)
    assert p2p.default_request_bytes == 2048
    assert limits[TASK_PROTOCOL] == 100000 + (64 << 10)
    assert limits[STATUS_PROTOCOL] == 4096


@pytest.mark.parametrize("line", ["max_inflight_per_peer = 0", "max_request_bytes = 10"])
def test_bad_net_bounds_are_a_one_line_error(tmp_path: Path, line: str) -> None:
    with pytest.raises(LocalError, match=r"\[net\]"):
        load_config(write(tmp_path, f"[net]\n{line}\n"))
