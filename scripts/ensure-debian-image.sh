#!/usr/bin/env bash
# Builds a local Debian base image, berth-debian:<suite>, with debootstrap from Debian's own
# mirror (no registry), unless it exists. The database backup test builds MariaDB on it from
# Debian's packages. Needs root. Usage: scripts/ensure-debian-image.sh [suite] (default: the
# host's suite, else bookworm).
set -euo pipefail
suite="${1:-$( . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}" )}"
suite="${suite:-bookworm}"
image="berth-debian:$suite"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "-----> $image exists"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work="$(mktemp -d /var/tmp/berth-debootstrap.XXXXXX)"
trap 'rm -rf "$work"' EXIT
echo "-----> debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
  tail -20 "$work/log" >&2
  exit 1
}
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
echo "-----> Importing $image"
tar -C "$work/root" -c . | docker import - "$image" >/dev/null
docker image inspect -f '       {{.Id}} {{.Size}} bytes' "$image"
