#!/usr/bin/env bash
# An aarch64 Python for the cross-architecture migration test (tests/sandbox/test_migration_xarch.py),
# run on an x86_64 host under qemu-user emulation. Idempotent; needs root, network at set-up time.
#
#   scripts/xarch-python.sh [DIR]        # default /var/cache/edgenode-xarch
#
# DIR/rootfs: Debian bookworm arm64 python3.11 with its libraries, unpacked by
#             `mmdebstrap --variant=extract` (no maintainer scripts, so no binfmt_misc needed);
# DIR/site:   the arm64 wheels of wasmtime, PyNaCl and cffi, pinned to the versions in .venv.
# Run: PYTHONPATH=REPO:DIR/site qemu-aarch64-static -L DIR/rootfs DIR/rootfs/usr/bin/python3.11 ...
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/cache/edgenode-xarch}
PIP=${PIP:-.venv/bin/pip}
[ "$(id -u)" = 0 ] || { echo "xarch-python: must run as root (apt-get, mmdebstrap)" >&2; exit 1; }
missing=""
for p in qemu-user-static mmdebstrap; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086  # the package list is meant to split into words
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
mkdir -p "$DIR"
if [ ! -x "$DIR/rootfs/usr/bin/python3.11" ]; then
  rm -rf "$DIR/rootfs.part"
  mmdebstrap --quiet --mode=root --variant=extract --architectures=arm64 \
    --include=python3.11-minimal,libpython3.11-stdlib,libffi8,libssl3,zlib1g,libexpat1 \
    bookworm "$DIR/rootfs.part" http://deb.debian.org/debian
  mv "$DIR/rootfs.part" "$DIR/rootfs"
fi
if [ ! -f "$DIR/site/.complete" ]; then
  pins=$("$PIP" list --format=freeze 2>/dev/null | grep -iE '^(wasmtime|pynacl|cffi|pycparser)==')
  rm -rf "$DIR/site.part" "$DIR/wheels.part"
  # shellcheck disable=SC2086  # one requirement per word
  "$PIP" download -q --dest "$DIR/wheels.part" --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 $pins
  mkdir -p "$DIR/site.part"
  for w in "$DIR"/wheels.part/*.whl; do python3 -m zipfile -e "$w" "$DIR/site.part/"; done
  touch "$DIR/site.part/.complete"
  rm -rf "$DIR/site" && mv "$DIR/site.part" "$DIR/site" && rm -rf "$DIR/wheels.part"
fi
wheels=("$DIR"/site/*.dist-info)
echo "xarch-python: $DIR/rootfs/usr/bin/python3.11 with ${#wheels[@]} wheels in $DIR/site"
