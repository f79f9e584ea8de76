#!/usr/bin/env bash
# mmdebstrap hooks are single-quoted on purpose: "$1" is the root, expanded by mmdebstrap.
# shellcheck disable=SC2016
# Build an edgenode arm64 image from Debian's own packages.
#
#   firmware/build-image.sh --profile pi   [--out DIR]   # SD-card image for Raspberry Pi 4/5
#   firmware/build-image.sh --profile test [--out DIR]   # kernel + initrd + ext4 root for qemu -M virt
#
# Layers, each cached under $EDGENODE_FW_CACHE (default /var/cache/edgenode-firmware when
# root, else ${XDG_CACHE_HOME:-~/.cache}/edgenode-firmware) and keyed by a hash of its inputs:
#   1. base root: mmdebstrap --arch=arm64 of bookworm (kernel, systemd, python3) as a tar
#   2. fastecdsa: libp2p 0.8.1 pins fastecdsa 2.3.2, which has no aarch64 wheel; it is built
#      once under qemu-user emulation in a throw-away builder root
#   3. wheel set: `pip download --platform ...aarch64 --only-binary=:all:` on the build host
# The node layer (venv, units, first-boot provisioning) is cheap and always rebuilt on top.
# Needs root, mmdebstrap, qemu-user-static + binfmt_misc, e2fsprogs, and for `pi` genimage.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SUITE=bookworm
MIRROR=${EDGENODE_FW_MIRROR:-http://deb.debian.org/debian}
FASTECDSA_VERSION=2.3.2          # the version libp2p==0.8.1 pins
PYVER=3.11                       # bookworm's python3
PROFILE="test"
OUT=""
PYTHON_HOST=${PYTHON_HOST:-$REPO/.venv/bin/python}
[ -x "$PYTHON_HOST" ] || PYTHON_HOST=python3
if [ "$(id -u)" = 0 ]; then DEFAULT_CACHE=/var/cache/edgenode-firmware
else DEFAULT_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/edgenode-firmware; fi
CACHE=${EDGENODE_FW_CACHE:-$DEFAULT_CACHE}
INITRAMFS_MODULES=""
COMPRESS=xz
LAYERS_ONLY=0
EXPORT_WHEELS=""

usage() {
  cat <<EOF
usage: $0 [--profile pi|test] [--out DIR] [--cache DIR] [--initramfs most|list] [--no-compress]
  --profile pi     Raspberry Pi 4/5 SD-card image: OUT/edgenode-pi-arm64-VERSION.img.xz + .sha256
  --profile test   qemu -M virt test root: OUT/vmlinuz, OUT/initrd.img, OUT/root.ext4 (self-test enabled)
  --initramfs      'list' (virtio/mmc/ext4/vfat only: about 3.5 min under emulation) or 'most'
                   (Debian's default: about 20 min); default list for test, most for pi
  --export-wheels DIR  also copy the aarch64 wheel set with edgenode's wheel to DIR (for
                   edgenode-update on devices, deploy/ansible and the container images)
  --layers-only    build and cache the base root, fastecdsa wheel and wheel set, then stop
  --cache DIR      layer cache (default $DEFAULT_CACHE; env EDGENODE_FW_CACHE)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --initramfs) INITRAMFS_MODULES=$2; shift 2 ;;
    --no-compress) COMPRESS=none; shift ;;
    --layers-only) LAYERS_ONLY=1; shift ;;
    --export-wheels) EXPORT_WHEELS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$PROFILE" in pi|test) ;; *) echo "build-image: --profile must be pi or test" >&2; exit 2 ;; esac
[ -n "$INITRAMFS_MODULES" ] || { [ "$PROFILE" = test ] && INITRAMFS_MODULES=list || INITRAMFS_MODULES=most; }
case "$INITRAMFS_MODULES" in most|list) ;; *) echo "build-image: --initramfs must be most or list" >&2; exit 2 ;; esac
OUT=${OUT:-$REPO/out/firmware-$PROFILE}

log() { printf '%s build-image: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
key_of() { sha256sum | cut -c1-16; }
count_wheels() { find "$1" -maxdepth 1 -name '*.whl' | wc -l; }
newest() { find "$1" -maxdepth 1 -name "$2" | sort -V | tail -n 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root, chroot, file ownership in the image)"
for tool in mmdebstrap mke2fs sha256sum tar; do command -v "$tool" >/dev/null || die "missing $tool"; done
[ "$PROFILE" = pi ] && { command -v genimage >/dev/null || die "missing genimage"; }

ensure_binfmt() {
  if [ "$(uname -m)" = aarch64 ]; then return 0; fi
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || die "cannot mount binfmt_misc (needs a privileged host); arm64 emulation is unavailable"
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    command -v update-binfmts >/dev/null || die "missing update-binfmts (binfmt-support)"
    update-binfmts --enable qemu-aarch64 || die "cannot enable qemu-aarch64 binfmt (install qemu-user-static)"
  fi
}

# ---------------------------------------------------------------- layer 1: base root
base_packages() {
  local pkgs="systemd-sysv,udev,kmod,linux-image-arm64,initramfs-tools,python3,python3-venv,libgmp10,util-linux"
  if [ "$PROFILE" = pi ]; then
    pkgs="$pkgs,raspi-firmware,firmware-brcm80211,wpasupplicant,iproute2,iputils-ping,systemd-timesyncd"
    pkgs="$pkgs,openssh-server,ca-certificates,e2fsprogs,dosfstools,zstd"
  fi
  echo "$pkgs"
}

initramfs_modules() {
  # Enough to find the root on qemu's virtio disk or a Pi's SD card (Pi 4: sdhci-iproc, Pi 5: sdhci-brcmstb).
  printf '%s\n' virtio_pci virtio_mmio virtio_blk ext4 vfat nls_cp437 nls_ascii \
    mmc_block sdhci_iproc sdhci_brcmstb sdhci_pltfm bcm2835_dma
}

build_base() {
  local pkgs key tarball
  pkgs=$(base_packages)
  key=$( { echo "v1 $SUITE $MIRROR $PROFILE $INITRAMFS_MODULES $pkgs"; initramfs_modules; } | key_of)
  tarball="$CACHE/base-$PROFILE-$key.tar"
  BASE_TAR=$tarball
  if [ -f "$tarball" ]; then log "base root: cached $tarball"; return 0; fi
  log "base root: mmdebstrap $SUITE arm64 ($PROFILE, initramfs MODULES=$INITRAMFS_MODULES); minutes under emulation"
  local hooks=()
  if [ "$INITRAMFS_MODULES" = list ]; then
    local mods
    mods=$(initramfs_modules | tr '\n' ' ')
    hooks+=(--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"')
    hooks+=(--setup-hook='echo MODULES=list > "$1/etc/initramfs-tools/conf.d/edgenode.conf"')
    hooks+=(--setup-hook="printf '%s\n' $mods > \"\$1/usr/share/initramfs-tools/modules.d/edgenode\"")
  fi
  if [ "$PROFILE" = pi ]; then
    # raspi-firmware writes cmdline.txt with this root and console.
    hooks+=(--setup-hook='mkdir -p "$1/etc/default" "$1/boot/firmware"')
    hooks+=(--setup-hook='printf "ROOTPART=LABEL=rootfs\nCONSOLES=\"serial0,115200 tty1\"\n" > "$1/etc/default/raspi-firmware"')
  fi
  mkdir -p "$CACHE"
  mmdebstrap --mode=root --format=tar --arch=arm64 --variant=minbase \
    --components=main,non-free-firmware \
    --include="$pkgs" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt=force-confdef --dpkgopt=force-confold \
    "${hooks[@]}" \
    --customize-hook='rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*' \
    "$SUITE" "$tarball.part" "$MIRROR"
  mv "$tarball.part" "$tarball"
}

# ---------------------------------------------------------------- layer 2: fastecdsa wheel
build_fastecdsa() {
  local key dir sdist_dir
  key=$(echo "v1 $SUITE fastecdsa $FASTECDSA_VERSION" | key_of)
  dir="$CACHE/fastecdsa-$key"
  FASTECDSA_DIR=$dir
  if ls "$dir"/fastecdsa-*.whl >/dev/null 2>&1; then log "fastecdsa: cached $(ls "$dir"/*.whl)"; return 0; fi
  log "fastecdsa $FASTECDSA_VERSION: building an aarch64 wheel under emulation (once)"
  sdist_dir=$(mktemp -d)
  "$PYTHON_HOST" -m pip download -q --no-deps --no-binary :all: --dest "$sdist_dir" \
    "fastecdsa==$FASTECDSA_VERSION" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  local sdist
  sdist=$(ls "$sdist_dir"/fastecdsa-*.tar.gz) || die "could not download the fastecdsa sdist"
  mkdir -p "$dir.part"
  local builder
  builder=$(mktemp -d)
  mmdebstrap --mode=root --arch=arm64 --variant=minbase \
    --include=gcc,libc6-dev,python3-dev,libgmp-dev,python3-pip,python3-setuptools,python3-wheel \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --customize-hook="copy-in $sdist /tmp" \
    --customize-hook="chroot \"\$1\" env -i PATH=/usr/bin:/bin HOME=/tmp python3 -m pip wheel --no-deps \
      --no-build-isolation --no-index -w /tmp/wheels /tmp/$(basename "$sdist")" \
    --customize-hook="sync-out /tmp/wheels $dir.part" \
    "$SUITE" "$builder" "$MIRROR"
  rm -rf "$builder" "$sdist_dir"
  ls "$dir.part"/fastecdsa-*.whl >/dev/null || die "fastecdsa wheel was not built"
  rm -rf "$dir"; mv "$dir.part" "$dir"
}

# ---------------------------------------------------------------- layer 3: wheel set
PLATFORM_ARGS=(--platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64
               --platform manylinux2014_aarch64 --platform linux_aarch64
               --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none
               --only-binary=:all:)

build_node_wheel() {
  # edgenode's own (pure Python) wheel, from a copy of the tree so the checkout stays clean.
  local src
  src=$(mktemp -d)
  cp -a "$REPO/pyproject.toml" "$REPO/README.md" "$src/"
  for pkg in edgenode ledger federated simnet; do
    [ -d "$REPO/$pkg" ] && cp -a "$REPO/$pkg" "$src/"
  done
  find "$src" -name __pycache__ -prune -exec rm -rf {} +
  NODE_WHEEL_DIR=$(mktemp -d)
  "$PYTHON_HOST" -m pip wheel -q --no-deps -w "$NODE_WHEEL_DIR" "$src" >"$NODE_WHEEL_DIR.log" 2>&1 \
    || { cat "$NODE_WHEEL_DIR.log" >&2; die "building the edgenode wheel failed"; }
  rm -rf "$src" "$NODE_WHEEL_DIR.log"
  NODE_WHEEL=$(ls "$NODE_WHEEL_DIR"/edgenode-*.whl)
  NODE_VERSION=$(basename "$NODE_WHEEL" | cut -d- -f2)
}

build_wheelset() {
  local reqs key dir
  reqs=$("$PYTHON_HOST" "$HERE/wheel-requires.py" "$NODE_WHEEL")
  # Pin the device's wheel set to the versions the build host's environment was tested with.
  local constraints
  constraints=$("$PYTHON_HOST" -m pip freeze --exclude-editable 2>/dev/null | grep '==' | grep -v '^edgenode==' || true)
  key=$( { echo "v1 $PYVER ${PLATFORM_ARGS[*]}"; echo "$reqs"; echo "$constraints"; ls "$FASTECDSA_DIR"; } | key_of)
  dir="$CACHE/wheels-$key"
  WHEEL_DIR=$dir
  if [ -f "$dir/.complete" ]; then log "wheel set: cached $dir ($(count_wheels "$dir") wheels)"; return 0; fi
  log "wheel set: pip download for aarch64 / cp$PYVER"
  rm -rf "$dir.part"; mkdir -p "$dir.part"
  echo "$constraints" >"$dir.constraints"
  local args=(-c "$dir.constraints")
  while IFS= read -r r; do [ -n "$r" ] && args+=("$r"); done <<<"$reqs"
  # Some dependencies publish only an sdist (varint, for one). When they are pure Python their
  # wheel is built here on the host and offered to the next round; a compiled one is an error.
  local round missing built
  for round in 1 2 3 4 5 6 7 8; do
    if "$PYTHON_HOST" -m pip download --progress-bar off --dest "$dir.part" --find-links "$FASTECDSA_DIR" \
      --find-links "$dir.part" "${PLATFORM_ARGS[@]}" "${args[@]}" >"$dir.log" 2>&1; then
      break
    fi
    # pip names them either way: "No matching distribution found for X", or after a
    # ResolutionImpossible, under "...have no matching distributions available...".
    missing=$( { sed -n 's/^ERROR: No matching distribution found for \([A-Za-z0-9._-]*\).*/\1/p' "$dir.log"
                 awk '/no matching distributions available/ {f = 1; next} f && /^    [A-Za-z0-9]/ {print $1} f && /^$/ {f = 0}' "$dir.log"
               } | sort -u)
    [ -n "$missing" ] || { grep -v '^WARNING: Location' "$dir.log" | tail -n 30 >&2; die "pip download failed"; }
    for m in $missing; do
      log "wheel set: $m has no wheel; building it from its sdist (round $round)"
      built=$(mktemp -d)
      "$PYTHON_HOST" -m pip wheel -q --no-deps -c "$dir.constraints" -w "$built" "$m" >"$dir.log" 2>&1 \
        || { cat "$dir.log" >&2; die "cannot build a wheel for $m"; }
      if ! find "$built" -name '*-none-any.whl' | grep -q .; then
        die "$m builds a platform wheel; build it under emulation like fastecdsa"
      fi
      mv "$built"/*.whl "$dir.part/"
      rm -rf "$built"
    done
  done
  rm -f "$dir.log" "$dir.constraints"
  ls "$dir.part"/onnxruntime-*.whl "$dir.part"/fastecdsa-*.whl >/dev/null || die "pip download failed"
  touch "$dir.part/.complete"
  rm -rf "$dir"; mv "$dir.part" "$dir"
}

# ---------------------------------------------------------------- node layer
install_node() {
  local root=$1 rel="/opt/edgenode/releases/$NODE_VERSION"
  log "node layer: venv $rel from $(count_wheels "$WHEEL_DIR") wheels + $(basename "$NODE_WHEEL")"
  # The venv is made by the root's own python (one short emulated call); the wheels are
  # unpacked by the host's pip, which is fast and needs no emulation.
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$root" python3 -m venv --without-pip "$rel"
  local site="$root$rel/lib/python$PYVER/site-packages"
  "$PYTHON_HOST" -m pip install -q --no-index --find-links "$WHEEL_DIR" --find-links "$NODE_WHEEL_DIR" \
    "${PLATFORM_ARGS[@]}" --target "$site" "$NODE_WHEEL" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  if [ ! -d "$site/edgenode" ] || [ ! -d "$site/onnxruntime" ]; then die "installing the wheel set into the root failed"; fi
  rm -rf "${site:?}/bin"
  local s
  for s in edgenode simnet; do
    printf '#!%s/bin/python\nimport sys\nfrom %s.cli import main\nsys.exit(main())\n' "$rel" "$s" >"$root$rel/bin/$s"
    chmod 0755 "$root$rel/bin/$s"
  done
  mkdir -p "$root/opt/edgenode/wheels"
  ln -sfn "releases/$NODE_VERSION" "$root/opt/edgenode/current"
  # Units, scripts and provisioning shared with deploy/.
  install -D -m 0644 "$REPO/deploy/systemd/edgenode.service" "$root/etc/systemd/system/edgenode.service"
  install -D -m 0644 "$REPO/deploy/systemd/edgenode.sysusers" "$root/usr/lib/sysusers.d/edgenode.conf"
  install -D -m 0644 "$REPO/deploy/sysctl/90-edgenode.conf" "$root/etc/sysctl.d/90-edgenode.conf"
  install -D -m 0755 "$REPO/deploy/bin/edgenode-service" "$root/usr/lib/edgenode/edgenode-service"
  install -D -m 0755 "$HERE/ota/edgenode-update" "$root/usr/local/sbin/edgenode-update"
  cp -a "$HERE/rootfs/." "$root/"
  systemd-sysusers --root="$root" "$root/usr/lib/sysusers.d/edgenode.conf"
  local units="edgenode-firstboot.service edgenode.service"
  [ "$PROFILE" = pi ] && units="$units systemd-networkd.service ssh.service"
  # shellcheck disable=SC2086
  systemctl --root="$root" enable $units >/dev/null 2>&1 || die "systemctl --root enable $units failed"
}

finish_test() {
  local root=$1
  cp -a "$HERE/selftest/." "$root/"
  systemctl --root="$root" enable edgenode-selftest.service >/dev/null 2>&1 || die "cannot enable the self-test"
  mkdir -p "$root/boot/firmware"
  cp "$HERE/selftest-boot.toml" "$root/boot/firmware/edgenode.toml"
  echo edgenode-ci >"$root/etc/hostname"
  printf '/dev/vda / ext4 rw 0 1\n' >"$root/etc/fstab"
  # Root login only on the serial console, no password: a test machine with no network.
  mkdir -p "$OUT"
  cp "$(newest "$root/boot" 'vmlinuz-*')" "$OUT/vmlinuz"
  cp "$(newest "$root/boot" 'initrd.img-*')" "$OUT/initrd.img"
  local mb
  mb=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 256 ))
  rm -f "$OUT/root.ext4"
  mke2fs -q -t ext4 -L rootfs -d "$root" "$OUT/root.ext4" "${mb}M"
  echo "$NODE_VERSION" >"$OUT/VERSION"
  log "test root: $OUT/root.ext4 (${mb} MiB), $OUT/vmlinuz, $OUT/initrd.img"
}

finish_pi() {
  local root=$1 work=$2
  mkdir -p "$root/boot/firmware"
  printf 'LABEL=rootfs / ext4 rw,noatime 0 1\nLABEL=bootfs /boot/firmware vfat rw,noatime,umask=0077 0 2\n' >"$root/etc/fstab"
  echo edgenode >"$root/etc/hostname"
  # Per-device identities are made on first boot: SSH host keys (edgenode-firstboot), machine-id (systemd).
  rm -f "$root"/etc/ssh/ssh_host_*
  : >"$root/etc/machine-id"
  [ -f "$root/boot/firmware/config.txt" ] || die "raspi-firmware did not populate /boot/firmware"
  cp "$HERE/boot/edgenode.toml.example" "$root/boot/firmware/edgenode.toml.example"
  # genimage puts /boot/firmware (raspi-firmware's tree) on the FAT partition and leaves
  # an empty mountpoint in the ext4 root.
  mkdir -p "$work/tmp"
  local mb
  mb=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 512 ))
  sed -e "s|@ROOTFS_MB@|$mb|" -e "s|@IMAGE@|edgenode-pi-arm64-$NODE_VERSION.img|" \
    "$HERE/genimage.cfg.in" >"$work/genimage.cfg"
  mkdir -p "$OUT"
  genimage --config "$work/genimage.cfg" --rootpath "$root" --inputpath "$work/tmp" \
    --outputpath "$work/images" --tmppath "$work/tmp/genimage" >&2
  local img="$OUT/edgenode-pi-arm64-$NODE_VERSION.img"
  mv "$work/images/edgenode-pi-arm64-$NODE_VERSION.img" "$img"
  if [ "$COMPRESS" = xz ]; then xz -T0 -6 -f "$img"; img="$img.xz"; fi
  (cd "$OUT" && sha256sum "$(basename "$img")" >"$(basename "$img").sha256")
  log "image: $img ($(du -h "$img" | cut -f1)); sha256 in $img.sha256"
}

main() {
  ensure_binfmt
  mkdir -p "$CACHE"
  build_base
  build_fastecdsa
  build_node_wheel
  build_wheelset
  if [ -n "$EXPORT_WHEELS" ]; then
    mkdir -p "$EXPORT_WHEELS"
    cp "$WHEEL_DIR"/*.whl "$NODE_WHEEL" "$EXPORT_WHEELS/"
    log "wheel set for edgenode $NODE_VERSION exported to $EXPORT_WHEELS"
  fi
  if [ "$LAYERS_ONLY" = 1 ]; then rm -rf "$NODE_WHEEL_DIR"; log "layers ready in $CACHE"; return 0; fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgenode-fw.XXXXXX")
  trap 'rm -rf "$WORK" "$NODE_WHEEL_DIR"' EXIT
  mkdir -p "$WORK/root"
  tar -C "$WORK/root" -xf "$BASE_TAR"
  install_node "$WORK/root"
  if [ "$PROFILE" = test ]; then finish_test "$WORK/root"; else finish_pi "$WORK/root" "$WORK"; fi
}

main
