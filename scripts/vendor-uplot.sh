#!/usr/bin/env bash
# Re-vendor the dashboard's charting library (uPlot) from the npm registry at the pinned version
# and check the files against the recorded checksums.  The page loads nothing from a CDN: these
# files are served by the dashboard itself.  Usage: scripts/vendor-uplot.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.6.32
INTEGRITY="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
DEST=edgenode/dashboard/static/vendor/uplot
FILES="uPlot.iife.min.js uPlot.min.css LICENSE"
if [ "${1:-}" != "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "uplot@$VERSION" --silent >/dev/null)
  got="sha512-$(openssl dgst -sha512 -binary "$tmp/uplot-$VERSION.tgz" | base64 -w0)"
  [ "$got" = "$INTEGRITY" ] || { echo "vendor-uplot: integrity mismatch: $got" >&2; exit 1; }
  tar -xzf "$tmp/uplot-$VERSION.tgz" -C "$tmp"
  mkdir -p "$DEST"
  for f in uPlot.iife.min.js uPlot.min.css; do cp "$tmp/package/dist/$f" "$DEST/$f"; done
  cp "$tmp/package/LICENSE" "$DEST/LICENSE"
fi
(cd "$DEST" && sha256sum -c --quiet SHA256SUMS)
head -c 60 "$DEST/uPlot.iife.min.js" | grep -q "(v$VERSION)" || { echo "vendor-uplot: not v$VERSION" >&2; exit 1; }
echo "uPlot $VERSION in $DEST: ok"
