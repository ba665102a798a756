#!/usr/bin/env bash
# Runs berth's whole test suite on a bare Debian machine: installs the build and test
# dependencies, makes sure a Docker engine runs (scripts/ensure-engine.sh), then runs every
# unit and black-box test. Needs root for apt-get and dockerd.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
# security_containers links a static test program (libc.a).
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q "install ok installed" || need+=(libc6-dev)
# tests/it/proxy.rs drives a real Caddy (scripts/ensure-proxy.sh starts it).
command -v caddy >/dev/null 2>&1 || need+=(caddy)
# tests/it/backup.rs pipes a backup through Debian's restic.
command -v restic >/dev/null 2>&1 || need+=(restic)
# Dokku's docker-options cases (tests/it/dokku_docker_options.rs) read JSON reports with jq.
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v git >/dev/null 2>&1 || need+=(git)
command -v make >/dev/null 2>&1 || need+=(make)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v script >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
if [ ${#need[@]} -gt 0 ]; then
  echo "-----> Installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo " !     cargo is required (install Rust with rustup)" >&2; exit 1; }

bash scripts/ensure-engine.sh
# The tests' scratch directories (roots, granted host paths) live where berth's mount rule
# accepts a bind source: below directories only root can change. /tmp is writable by all.
export TMPDIR=/var/lib/berth-test-tmp
mkdir -p "$TMPDIR" && chmod 0755 "$TMPDIR"
cargo test --all-targets "$@"

# The multi-node swarm tests (tests/it/swarm.rs, docs/swarm.md) make the machine's engine a
# swarm manager with two extra nodes: they run after everything else, one at a time, and the
# test bed goes afterwards. Only on a full run (no arguments); BERTH_SWARM=0 skips them.
if [ $# -eq 0 ] && [ "${BERTH_SWARM:-1}" = 1 ]; then
  bash scripts/ensure-swarm.sh
  trap 'bash scripts/ensure-swarm.sh teardown' EXIT
  BERTH_SWARM=1 cargo test --test it swarm:: -- --test-threads=1
fi
