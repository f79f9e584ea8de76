#!/usr/bin/env bash
# Add edgenode to a Jetson (Orin / Xavier) running JetPack 6 (Ubuntu 22.04, Python 3.10).
# edgenode needs Python >= 3.11 (Flower 1.42), so the node gets its own managed CPython 3.11
# (uv by default, or deadsnakes' python3.11 with --deadsnakes) in a release venv beside the
# system Python, which JetPack's own tools keep using. onnxruntime is replaced by a Jetson
# build of onnxruntime-gpu with the CUDA and TensorRT execution providers.
#
#   sudo firmware/jetson/install-jetpack.sh --wheels DIR --ort-wheel onnxruntime_gpu-...-cp311-...aarch64.whl
#
#   --wheels DIR        aarch64 wheel set with edgenode's wheel (firmware/build-image.sh --export-wheels DIR)
#   --ort-wheel FILE    onnxruntime-gpu wheel for this JetPack and cp311 (see docs/firmware.md)
#   --deadsnakes        use apt's python3.11 from ppa:deadsnakes instead of uv
#   --prefix DIR        install root (default /opt/edgenode)
#   --no-service        do not install or start the systemd unit
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
prefix=/opt/edgenode
wheels=""
ort_wheel=""
use_deadsnakes=0
service=1
pyver=3.11

die() { echo "install-jetpack: error: $*" >&2; exit 1; }
say() { echo "install-jetpack: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels=$2; shift 2 ;;
    --ort-wheel) ort_wheel=$2; shift 2 ;;
    --deadsnakes) use_deadsnakes=1; shift ;;
    --prefix) prefix=$2; shift 2 ;;
    --no-service) service=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (sudo)"
[ "$(uname -m)" = aarch64 ] || die "this is for Jetson (aarch64) boards"
if [ -z "$wheels" ] || [ ! -d "$wheels" ]; then die "--wheels DIR is required"; fi
if [ -z "$ort_wheel" ] || [ ! -f "$ort_wheel" ]; then
  die "--ort-wheel FILE is required (onnxruntime-gpu for JetPack, cp311)"
fi
if [ -f /etc/nv_tegra_release ]; then say "$(head -n 1 /etc/nv_tegra_release)"; else say "warning: no /etc/nv_tegra_release; not a JetPack root?"; fi

version=$(find "$wheels" -maxdepth 1 -name 'edgenode-*.whl' -printf '%f\n' | sed 's/^edgenode-\([^-]*\)-.*/\1/' | sort -V | tail -n 1)
[ -n "$version" ] || die "no edgenode wheel in $wheels"
release="$prefix/releases/$version"

# 1. A managed CPython 3.11.
if [ "$use_deadsnakes" = 1 ]; then
  apt-get update -q
  apt-get install -y -q software-properties-common
  add-apt-repository -y ppa:deadsnakes/ppa
  apt-get install -y -q "python$pyver" "python$pyver-venv" libgmp10
  python="/usr/bin/python$pyver"
else
  command -v uv >/dev/null || die "uv not found: install it (https://docs.astral.sh/uv/) or pass --deadsnakes"
  apt-get install -y -q libgmp10
  export UV_PYTHON_INSTALL_DIR="$prefix/python"
  uv python install "$pyver"
  python=$(uv python find "$pyver")
fi
"$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' || die "$python is not >= 3.11"

# 2. The release venv: edgenode from the wheel set, then the GPU onnxruntime in place of the CPU one.
rm -rf "$release"
"$python" -m venv "$release"
"$release/bin/pip" install -q --no-index --find-links "$wheels" "edgenode==$version"
"$release/bin/pip" uninstall -y -q onnxruntime
"$release/bin/pip" install -q --no-index --no-deps "$ort_wheel"
providers=$("$release/bin/python" -c 'import onnxruntime as o; print(" ".join(o.get_available_providers()))')
say "onnxruntime providers: $providers"
case " $providers " in *" CUDAExecutionProvider "*) ;; *) die "the onnxruntime wheel has no CUDA provider" ;; esac
case " $providers " in *" TensorrtExecutionProvider "*) ;; *) say "warning: no TensorRT provider in this onnxruntime build" ;; esac
: >"$release/.complete"
ln -sfn "releases/$version" "$prefix/.current.new"
mv -T "$prefix/.current.new" "$prefix/current"

# 3. The same hardened unit as every other host, plus GPU access for the Jetson.
if [ "$service" = 1 ]; then
  install -D -m 0644 "$REPO/deploy/systemd/edgenode.service" /etc/systemd/system/edgenode.service
  install -D -m 0644 "$HERE/edgenode-jetson.conf" /etc/systemd/system/edgenode.service.d/20-jetson.conf
  install -D -m 0644 "$REPO/deploy/systemd/edgenode.sysusers" /usr/lib/sysusers.d/edgenode.conf
  install -D -m 0644 "$REPO/deploy/sysctl/90-edgenode.conf" /etc/sysctl.d/90-edgenode.conf
  install -D -m 0755 "$REPO/deploy/bin/edgenode-service" /usr/lib/edgenode/edgenode-service
  install -D -m 0755 "$REPO/firmware/ota/edgenode-update" /usr/local/sbin/edgenode-update
  systemd-sysusers /usr/lib/sysusers.d/edgenode.conf
  sysctl -p /etc/sysctl.d/90-edgenode.conf >/dev/null
  systemctl daemon-reload
  systemctl enable --now edgenode.service
  say "edgenode $version installed; journalctl -u edgenode shows its peer id"
else
  say "edgenode $version installed in $release (no service)"
fi
