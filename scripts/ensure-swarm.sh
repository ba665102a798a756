#!/usr/bin/env bash
# The multi-node Docker Swarm test bed, on one machine (docs/swarm.md, tests/it/swarm.rs):
#   - Debian's docker-registry on loopback (127.0.0.1:5000), its own config and data dir;
#   - N extra dockerd "nodes", each in its own network namespace (entered with
#     `nsenter --net`, not `ip netns exec`, which remounts /sys and hides the cgroup mounts) and
#     UTS namespace (its own hostname, so `node.hostname == X` names one node), with its own
#     --data-root, --exec-root, socket, pid file and config file, storage driver vfs;
#   - a bridge on a private test subnet in the machine's namespace, one veth pair per node;
#   - the main engine (scripts/ensure-engine.sh) as the swarm manager, advertising the bridge
#     address; every node joined as a worker.
# Every node reaches the registry at the same name as the manager, 127.0.0.1:5000 (loopback is
# an insecure registry by default on every engine): a socat in each node's namespace forwards
# its loopback port to the bridge address, where another socat forwards to the registry.
# Idempotent: what answers is kept, what is missing is made. Prints the nodes' sockets.
#
#   bash scripts/ensure-swarm.sh            # bring it up (BERTH_SWARM_NODES=2)
#   bash scripts/ensure-swarm.sh teardown   # stop nodes, leave the swarm, remove the network
#   bash scripts/ensure-swarm.sh teardown --purge   # ...and delete the nodes' and registry's data
set -euo pipefail

NODES="${BERTH_SWARM_NODES:-2}"
STATE=/var/lib/berth-swarm
RUN=/run/berth-swarm
LOG=/var/log/berth-swarm
BRIDGE=berthsw0
# 198.18.0.0/15 is reserved for network tests (RFC 2544): in no Docker address pool (bridges
# and swarm overlays pick from 172.17+/16, 192.168/20 and 10.0.0.0/8), routed nowhere.
SUBNET_PREFIX=198.18.0
MANAGER_ADDR="$SUBNET_PREFIX.1"
REGISTRY_PORT="${BERTH_SWARM_REGISTRY_PORT:-5000}"
REGISTRY="127.0.0.1:$REGISTRY_PORT"

say() { echo "-----> $*"; }
fail() { echo " !     $*" >&2; exit 1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "Installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

node_name() { echo "berth-sw$1"; }
node_addr() { echo "$SUBNET_PREFIX.$((10 + $1))"; }
node_sock() { echo "$RUN/$(node_name "$1")/docker.sock"; }
node_docker() { local n=$1; shift; docker -H "unix://$(node_sock "$n")" "$@"; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Starts "$@" in its own session, detached, logging to $2 and recording its pid in $1, unless
# the pid recorded there is alive.
start_daemon() {
  local pidfile=$1 logfile=$2
  shift 2
  pid_alive "$pidfile" && return
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# SIGTERM, then wait up to 30 s: a dockerd stops its containers gracefully first.
stop_daemon() {
  local pidfile=$1 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && fail "process $pid ($pidfile) did not stop after SIGTERM"
  rm -f "$pidfile"
}

ensure_registry() {
  local dir="$STATE/registry"
  mkdir -p "$dir/data" "$RUN" "$LOG"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  if ! pid_alive "$RUN/registry.pid"; then
    if curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null; then
      fail "something else already serves $REGISTRY; set BERTH_SWARM_REGISTRY_PORT to a free port"
    fi
    say "Starting docker-registry on $REGISTRY (data: $dir/data)"
    start_daemon "$RUN/registry.pid" "$LOG/registry.log" docker-registry serve "$dir/config.yml"
  fi
  for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null && return; sleep 0.2; done
  fail "docker-registry did not answer on $REGISTRY; see $LOG/registry.log"
}

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    say "Creating bridge $BRIDGE ($MANAGER_ADDR/24)"
    ip link add "$BRIDGE" type bridge
    ip addr add "$MANAGER_ADDR/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # br_netfilter sends bridged frames through FORWARD, whose policy the main engine sets to
  # DROP: let node-to-node traffic (gossip, VXLAN) across the bridge.
  iptables -C DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
    iptables -I DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  # The nodes reach the registry at the bridge address.
  start_daemon "$RUN/registry-bridge.pid" "$LOG/registry.log" \
    socat "TCP-LISTEN:$REGISTRY_PORT,bind=$MANAGER_ADDR,reuseaddr,fork" "TCP:$REGISTRY"
}

ensure_netns() {
  local n=$1 ns veth
  ns=$(node_name "$n")
  veth="bsw${n}h"
  [ -e "/var/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
  fi
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  # Not `ip ... | grep -q`: grep exits at the first match, ip may die of SIGPIPE, and pipefail
  # then reads an assigned address as missing.
  grep -q "$(node_addr "$n")/" <<<"$(ip -n "$ns" addr show dev eth0)" ||
    ip -n "$ns" addr add "$(node_addr "$n")/24" dev eth0
  ip -n "$ns" route replace default via "$MANAGER_ADDR"
  start_daemon "$RUN/$ns/registry.pid" "$LOG/$ns-registry.log" \
    nsenter "--net=/var/run/netns/$ns" \
    socat "TCP-LISTEN:$REGISTRY_PORT,bind=127.0.0.1,reuseaddr,fork" "TCP:$MANAGER_ADDR:$REGISTRY_PORT"
}

ensure_node() {
  local n=$1 ns
  ns=$(node_name "$n")
  mkdir -p "$STATE/$ns/docker" "$RUN/$ns/exec"
  ensure_netns "$n"
  if ! node_docker "$n" info >/dev/null 2>&1; then
    # Its own config file: the machine's /etc/docker/daemon.json is the main engine's.
    echo '{}' >"$STATE/$ns/daemon.json"
    say "Starting node $ns ($(node_addr "$n"), log: $LOG/$ns.log)"
    start_daemon "$RUN/$ns/start.pid" "$LOG/$ns.log" \
      unshare --uts sh -c "hostname $ns && exec nsenter --net=/var/run/netns/$ns dockerd \
        --config-file $STATE/$ns/daemon.json \
        --data-root $STATE/$ns/docker --exec-root $RUN/$ns/exec \
        -H unix://$(node_sock "$n") --pidfile $RUN/$ns/docker.pid \
        --storage-driver vfs --cgroup-parent /$ns \
        --containerd-namespace $ns --containerd-plugins-namespace $ns-plugins \
        --insecure-registry $MANAGER_ADDR:$REGISTRY_PORT"
    for _ in $(seq 1 60); do node_docker "$n" info >/dev/null 2>&1 && break; sleep 0.5; done
    node_docker "$n" info >/dev/null 2>&1 || { tail -20 "$LOG/$ns.log" >&2; fail "node $ns did not start"; }
  fi
}

ensure_manager() {
  local state addr
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  if [ "$state" = inactive ]; then
    say "Initialising the swarm on the main engine (advertise $MANAGER_ADDR)"
    docker swarm init --advertise-addr "$MANAGER_ADDR" --listen-addr "$MANAGER_ADDR:2377" \
      --data-path-addr "$MANAGER_ADDR" >/dev/null
  fi
  addr=$(docker info --format '{{.Swarm.NodeAddr}}')
  [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] ||
    fail "the main engine is in a swarm but not a manager; run \`docker swarm leave\` first"
  [ "$addr" = "$MANAGER_ADDR" ] ||
    fail "the main engine is a swarm manager at $addr, not on the test subnet ($MANAGER_ADDR)"
}

# Joins node n as a worker unless the manager lists it as ready; removes stale entries that
# carry its hostname (a node whose data root was reset joins as a new node).
ensure_joined() {
  local n=$1 ns id
  ns=$(node_name "$n")
  id=$(node_docker "$n" info --format '{{.Swarm.NodeID}}')
  if [ -n "$id" ] && [ "$(docker node inspect "$id" --format '{{.Status.State}}' 2>/dev/null)" = ready ]; then
    return
  fi
  [ -n "$id" ] && node_docker "$n" swarm leave --force >/dev/null 2>&1 || true
  for stale in $(docker node ls --filter "name=$ns" --format '{{.ID}} {{.Hostname}}' | awk -v h="$ns" '$2 == h {print $1}'); do
    docker node rm --force "$stale" >/dev/null
  done
  say "Joining $ns to the swarm"
  node_docker "$n" swarm join --token "$(docker swarm join-token -q worker)" \
    --advertise-addr "$(node_addr "$n")" --listen-addr "$(node_addr "$n"):2377" \
    "$MANAGER_ADDR:2377" >/dev/null
  for _ in $(seq 1 60); do
    id=$(node_docker "$n" info --format '{{.Swarm.NodeID}}')
    [ "$(docker node inspect "$id" --format '{{.Status.State}}' 2>/dev/null)" = ready ] && return
    sleep 0.5
  done
  fail "node $ns joined but the manager does not see it ready"
}

up() {
  [ "$(id -u)" = 0 ] || fail "the swarm test bed needs root (network namespaces, dockerd)"
  bash "$(dirname "$0")/ensure-engine.sh" >/dev/null
  apt_install docker-registry socat iproute2 util-linux curl
  ensure_registry
  ensure_bridge
  ensure_manager
  for n in $(seq 1 "$NODES"); do
    ensure_node "$n"
    ensure_joined "$n"
  done
  say "Swarm ready: manager $MANAGER_ADDR, registry $REGISTRY, nodes:"
  for n in $(seq 1 "$NODES"); do echo "       $(node_name "$n") unix://$(node_sock "$n")"; done
}

teardown() {
  local purge=${1:-} ns
  for dir in "$RUN"/berth-sw*; do
    [ -d "$dir" ] || continue
    ns=$(basename "$dir")
    say "Stopping node $ns"
    # Leaving first: a node restarted with a vanished cluster's state waits for it at start.
    docker -H "unix://$dir/docker.sock" swarm leave --force >/dev/null 2>&1 || true
    stop_daemon "$dir/docker.pid"
    rm -f "$dir/start.pid"
    stop_daemon "$dir/registry.pid"
    ip link del "bsw${ns#berth-sw}h" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    docker node ls --format '{{.ID}} {{.Hostname}}' 2>/dev/null | awk -v h="$ns" '$2 == h {print $1}' |
      xargs -r docker node rm --force >/dev/null
  done
  if [ "$(docker info --format '{{.Swarm.NodeAddr}}' 2>/dev/null)" = "$MANAGER_ADDR" ]; then
    # Before the bridge goes: a manager whose listen address is gone cannot start its swarm.
    say "Leaving the swarm on the main engine (its swarm services are removed)"
    docker swarm leave --force >/dev/null
  fi
  stop_daemon "$RUN/registry-bridge.pid"
  stop_daemon "$RUN/registry.pid"
  iptables -D DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if [ "$purge" = --purge ]; then
    say "Deleting $STATE (nodes' engines and the registry's images)"
    rm -rf "$STATE" "$RUN"
  fi
}

case "${1:-up}" in
  up) up ;;
  teardown) teardown "${2:-}" ;;
  *) fail "usage: $0 [up | teardown [--purge]]" ;;
esac
