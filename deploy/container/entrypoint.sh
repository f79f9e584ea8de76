#!/bin/sh
# Container entrypoint for edgenode (compose and Kubernetes).
#   EDGENODE_HOME                 node home (default /var/lib/edgenode)
#   EDGENODE_KEY_FILE             optional: a node.key to use (a mounted Secret), copied into the home
#   EDGENODE_PEER_ID_OUT          optional: write this node's peer id to that file (compose bootstrap)
#   EDGENODE_BOOTSTRAP_HOST       optional: host name of the bootstrap peer (resolved to an IPv4 address)
#   EDGENODE_BOOTSTRAP_PEER       its peer id, or
#   EDGENODE_BOOTSTRAP_PEER_FILE  a file holding it (waited for, up to EDGENODE_BOOTSTRAP_WAIT seconds)
#   EDGENODE_BOOTSTRAP_ADDRS      optional: more bootstrap multiaddrs (/p2p/<peer id>), comma separated
#   EDGENODE_LISTEN_PORT          TCP port to listen on (default 4001)
#   EDGENODE_ENTRYPOINT_CHECK=1   write the config, print the peer id, and exit (no node)
# Writes config.toml from these, prints the peer id, then runs the node.
set -eu
home=${EDGENODE_HOME:-/var/lib/edgenode}
port=${EDGENODE_LISTEN_PORT:-4001}
mkdir -p "$home"

if [ -n "${EDGENODE_KEY_FILE:-}" ] && [ ! -f "$home/node.key" ]; then
  cp "$EDGENODE_KEY_FILE" "$home/node.key"
  chmod 0600 "$home/node.key"
fi
[ -f "$home/node.key" ] || edgenode init --home "$home" >/dev/null
peer=$(edgenode id --home "$home")
echo "edgenode: $(edgenode --version) peer id $peer"
if [ -n "${EDGENODE_PEER_ID_OUT:-}" ]; then
  echo "$peer" >"$EDGENODE_PEER_ID_OUT.tmp" && mv "$EDGENODE_PEER_ID_OUT.tmp" "$EDGENODE_PEER_ID_OUT"
fi

bootstrap=""
if [ -n "${EDGENODE_BOOTSTRAP_HOST:-}" ]; then
  boot_peer=${EDGENODE_BOOTSTRAP_PEER:-}
  wait_s=${EDGENODE_BOOTSTRAP_WAIT:-120}
  start=$(date +%s)
  while [ -z "$boot_peer" ] && [ -n "${EDGENODE_BOOTSTRAP_PEER_FILE:-}" ]; do
    [ -s "$EDGENODE_BOOTSTRAP_PEER_FILE" ] && boot_peer=$(cat "$EDGENODE_BOOTSTRAP_PEER_FILE") && break
    [ $(( $(date +%s) - start )) -lt "$wait_s" ] || { echo "edgenode: no bootstrap peer id after ${wait_s}s" >&2; exit 4; }
    sleep 1
  done
  addr=""
  while [ -z "$addr" ]; do
    addr=$(getent ahostsv4 "$EDGENODE_BOOTSTRAP_HOST" | awk 'NR==1 {print $1}')
    [ -n "$addr" ] && break
    [ $(( $(date +%s) - start )) -lt "$wait_s" ] || { echo "edgenode: cannot resolve $EDGENODE_BOOTSTRAP_HOST" >&2; exit 4; }
    sleep 1
  done
  if [ "$boot_peer" != "$peer" ]; then
    bootstrap="\"/ip4/$addr/tcp/4001/p2p/$boot_peer\""
  fi
fi

for a in $(echo "${EDGENODE_BOOTSTRAP_ADDRS:-}" | tr ',' ' '); do
  bootstrap="${bootstrap:+$bootstrap, }\"$a\""
done

cat >"$home/config.toml" <<TOML
# Written by the container entrypoint.
[net]
listen = ["/ip4/0.0.0.0/tcp/$port"]
bootstrap = [$bootstrap]
TOML

[ "${EDGENODE_ENTRYPOINT_CHECK:-0}" = 1 ] && exit 0
if edgenode run --help >/dev/null 2>&1; then
  exec edgenode run --home "$home"
fi
echo "edgenode: this release has no 'edgenode run'; holding the identity only"
exec sleep infinity
