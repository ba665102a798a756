#!/usr/bin/env bash
# Makes sure berth's proxy runs with berth's config, on a bare Debian machine: installs
# Debian's caddy when missing, has berth render the config (`berth proxy:build-config`, which
# loads it into a caddy that already answers), and otherwise starts caddy with that file
# (`caddy run --config <root>/proxy/caddy.json`): with systemd where it runs (a drop-in for
# Debian's caddy.service), else in the background with its log in <root>/proxy/caddy.log and
# its pid in <root>/proxy/caddy.pid. Caddy runs as the owner of the berth root, so the admin
# endpoint (`[proxy] admin` in berth.toml: by default the unix socket <root>/proxy/admin.sock,
# else a loopback address) is reachable by berth's hooks and root only. Sets the kernel to hand
# a reloaded caddy its old socket's queued connections (net.ipv4.tcp_migrate_req). Idempotent.
#
#   ensure-proxy.sh [--root DIR] [--background]
#     --root DIR      berth's root (default $BERTH_ROOT, else /var/lib/berth)
#     --background    never use systemd (a private instance, as the tests start)
#   BERTH_BIN         the berth binary (default: berth on PATH)
set -euo pipefail

ROOT="${BERTH_ROOT:-/var/lib/berth}"
BACKGROUND=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --background) BACKGROUND=1; shift ;;
    *) echo " !     unknown option $1 (ensure-proxy.sh [--root DIR] [--background])" >&2; exit 2 ;;
  esac
done
BERTH="${BERTH_BIN:-berth}"
PROXY_DIR="$ROOT/proxy"
CONFIG="$PROXY_DIR/caddy.json"
LOG="$PROXY_DIR/caddy.log"
PIDFILE="$PROXY_DIR/caddy.pid"
export BERTH_ROOT="$ROOT"

say() { echo "-----> $*"; }

if ! command -v caddy >/dev/null 2>&1; then
  say "Installing caddy"
  apt-get update -qq
  # Debian's package enables and starts its own caddy.service on a systemd machine: berth's
  # drop-in below replaces its config.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null
fi

# Caddy opens a new listening socket (SO_REUSEPORT) at every config change and closes the old
# one; connections the kernel had queued on the old socket are reset, unless it hands them to
# the new one (net.ipv4.tcp_migrate_req, Linux 5.14). Under load, 100 reloads reset 45-52 new
# connections without it, none with it (BENCHMARKS.md, serving). Set for the host's network
# namespace, where caddy listens, and kept across reboots.
MIGRATE=/proc/sys/net/ipv4/tcp_migrate_req
if [ ! -e "$MIGRATE" ]; then
  echo " !     this kernel cannot hand queued connections to a reloaded proxy (net.ipv4.tcp_migrate_req needs Linux 5.14): a proxy reload may reset a connection being opened" >&2
elif [ "$(cat "$MIGRATE")" != 1 ]; then
  if (echo 1 >"$MIGRATE") 2>/dev/null; then
    mkdir -p /etc/sysctl.d
    echo "net.ipv4.tcp_migrate_req = 1" >/etc/sysctl.d/60-berth-proxy.conf
    say "Set net.ipv4.tcp_migrate_req = 1: a proxy reload resets no connection being opened"
  else
    echo " !     could not set net.ipv4.tcp_migrate_req = 1 (run as root): a proxy reload may reset a connection being opened" >&2
  fi
fi

# Renders the config file from berth's records and loads it into a caddy that answers; only
# "does not answer" goes on to start one (bad settings in berth.toml stop here).
if errors=$("$BERTH" proxy:build-config --wait 0 2>&1 >/dev/null); then
  say "Proxy running: caddy $(caddy version | cut -d' ' -f1), config $CONFIG"
  exit 0
fi
case "$errors" in
  *"does not answer at"*) ;;
  *) echo "$errors" >&2; exit 1 ;;
esac

OWNER=$(stat -c %U "$ROOT")
GROUP=$(stat -c %G "$ROOT")
# Caddy keeps its certificates where berth's config says (<root>/proxy/data); these keep
# anything else it writes out of the user's home.
CADDY_ENV=(HOME="$PROXY_DIR" XDG_DATA_HOME="$PROXY_DIR/data" XDG_CONFIG_HOME="$PROXY_DIR/config")
# The proxy shares the host's cores with the apps it serves. Go's scheduler keeps one P per core
# spinning for work, which takes CPU from the apps behind it; one core fewer (at least one) and a
# garbage collector that runs at 4x the live heap instead of 2x cut Caddy's CPU per proxied
# request from 350-430 us to 262-288 us, +22% throughput on 2 cores (BENCHMARKS.md, serving).
# An admin's own GOMAXPROCS or GOGC wins.
cores=$(nproc 2>/dev/null || echo 1)
CADDY_ENV+=(GOGC="${GOGC:-400}" GOMAXPROCS="${GOMAXPROCS:-$(( cores > 1 ? cores - 1 : 1 ))}")

if [ "$BACKGROUND" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  say "Starting caddy with systemd (as $OWNER, config $CONFIG)"
  mkdir -p /etc/systemd/system/caddy.service.d
  cat >/etc/systemd/system/caddy.service.d/berth.conf <<EOF
# Written by berth's scripts/ensure-proxy.sh: caddy serves berth's config, which berth changes
# through the admin endpoint; a reload is \`berth proxy:build-config\`.
[Service]
User=$OWNER
Group=$GROUP
Environment=${CADDY_ENV[*]}
ExecStart=
ExecStart=$(command -v caddy) run --environ --config $CONFIG
ExecReload=
EOF
  systemctl daemon-reload
  systemctl enable caddy >/dev/null 2>&1
  systemctl restart caddy
else
  say "Starting caddy in the background as $OWNER (log: $LOG)"
  run_as=()
  if [ "$OWNER" != root ]; then
    # Ports below 1024 without root: the capability is passed on to caddy, and to it alone.
    run_as=(setpriv --reuid="$OWNER" --regid="$GROUP" --init-groups
      --inh-caps=+net_bind_service --ambient-caps=+net_bind_service)
  fi
  env "${CADDY_ENV[@]}" nohup "${run_as[@]}" caddy run --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
fi

if ! "$BERTH" proxy:build-config --wait 30 >/dev/null; then
  echo " !     caddy did not answer; see $LOG (or journalctl -u caddy)" >&2
  tail -20 "$LOG" >&2 2>/dev/null || true
  exit 1
fi
say "Proxy running: caddy $(caddy version | cut -d' ' -f1), config $CONFIG"
