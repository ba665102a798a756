#!/usr/bin/env bash
# Makes sure a Docker engine answers and the local base image exists, on a bare Debian machine:
# installs Debian's docker.io and busybox-static when missing, starts dockerd (systemd where it
# runs, else in the background with its log in /var/log/berth-dockerd.log), and imports
# `berth-base:latest`, a busybox image built from the Debian package (no registry needed).
# Idempotent; used by .ci/run, install.sh and the engine tests.
set -euo pipefail

BASE_IMAGE="${BERTH_BASE_IMAGE:-berth-base:latest}"
DOCKERD_LOG="${BERTH_DOCKERD_LOG:-/var/log/berth-dockerd.log}"

say() { echo "-----> $*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "Installing ${missing[*]}"
    if [ ! -f /var/lib/apt/lists/lock ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ]; then
      apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    }
  fi
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! engine_answers; then
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    say "Starting docker with systemd"
    systemctl start docker
  else
    say "Starting dockerd in the background (log: $DOCKERD_LOG)"
    nohup dockerd >>"$DOCKERD_LOG" 2>&1 &
  fi
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 1
  done
  engine_answers || { echo " !     dockerd did not start; see $DOCKERD_LOG" >&2; tail -20 "$DOCKERD_LOG" >&2 || true; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ -x /bin/busybox ] || apt_install busybox-static
  say "Importing base image $BASE_IMAGE from busybox"
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  # mktemp makes its folder 0700, and that mode becomes the image's `/`: on a vfs engine a
  # non-root container user then cannot reach /app at all.
  chmod 0755 "$dir"
  mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc" "$dir/www"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $("$dir/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
  done
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  tar -C "$dir" -c . | docker import -c 'ENV PATH=/bin' - "$BASE_IMAGE" >/dev/null
fi
say "Engine ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null), base image $BASE_IMAGE"
