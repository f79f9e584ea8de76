#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages (when root), a virtual
# environment in .venv, and edgenode installed into it with its dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# Debian packages: the wasm32-wasi C toolchain for the example tasks, binaryen (the Asyncify
# pass for migratable tasks), the checkers the deploy tests use, and chromium (the dashboard's
# browser tests drive it headless).  With --firmware, also what the arm64 image build and boot need.
APT_PKGS="clang lld wasi-libc libclang-rt-dev-wasm32 wabt binaryen shellcheck systemd chromium iproute2 iptables nftables"
if [ "${1:-}" = "--firmware" ]; then
  APT_PKGS="$APT_PKGS mmdebstrap arch-test qemu-system-arm qemu-user-static binfmt-support genimage dosfstools mtools e2fsprogs xz-utils"
fi
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing" >&2
    # shellcheck disable=SC2086  # the package list is meant to split into words
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: warning: missing Debian packages:$missing (run as root or install them)" >&2
  fi
fi

stamp=.venv/.edgenode-installed
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing edgenode and its dependencies into .venv" >&2
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

# js-libp2p for the interoperability test (tests/interop), only where npm exists and only
# when the lockfile is newer than what npm last installed.  Without it that test skips.
js=tests/interop/js
if command -v npm >/dev/null &&
  { [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; }; then
  echo "setup: installing js-libp2p into $js/node_modules" >&2
  if ! npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >/dev/null; then
    rm -rf "$js/node_modules"
    echo "setup: warning: npm ci failed; tests/interop will be skipped" >&2
  fi
fi

# With --firmware (root, qemu-user-static and mmdebstrap installed above): also the emulated
# aarch64 Python that the cross-architecture migration test resumes snapshots in. Without it
# that test skips.
if [ "${1:-}" = "--firmware" ] && [ "$(id -u)" = 0 ]; then
  scripts/xarch-python.sh || echo "setup: warning: no aarch64 Python; tests/sandbox/test_migration_xarch.py will be skipped" >&2
fi
