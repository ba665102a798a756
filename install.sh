#!/usr/bin/env bash
# Sets a Debian server up as a berth push target. Idempotent: re-run it to upgrade.
#
#   sudo ./install.sh [--prefix /usr/local] [--root /var/lib/berth] [--user berth] [--no-engine] [--no-proxy]
#
# It installs a container engine when none answers (Debian's docker.io) and starts it, builds
# and installs the binaries, creates the berth user (in the docker group) and BERTH_ROOT with a
# commented berth.toml, re-installs the hooks of existing apps, and installs and starts the
# proxy in front of the apps (Debian's caddy, scripts/ensure-proxy.sh) unless --no-proxy.
set -euo pipefail
cd "$(dirname "$0")"

PREFIX=/usr/local
ROOT=/var/lib/berth
BERTH_USER=berth
ENGINE=yes
PROXY=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --root) ROOT="$2"; shift 2 ;;
    --user) BERTH_USER="$2"; shift 2 ;;
    --no-engine) ENGINE=no; shift ;;
    --no-proxy) PROXY=no; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo " !     unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "-----> $*"; }
detail() { echo "       $*"; }
fail() { echo " !     $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "install.sh needs root (sudo ./install.sh)"
[ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 \
  || fail "berth's installer supports Debian and its derivatives (apt-get); this system is not one"

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v git >/dev/null 2>&1 || need+=(git)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  say "Installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || fail "cargo is required to build berth (install Rust with rustup, then re-run)"

if [ "$ENGINE" = yes ]; then
  bash scripts/ensure-engine.sh
fi

say "Building berth (release)"
# --target-dir: the binaries are copied from target/release, whatever CARGO_TARGET_DIR says.
cargo build --release --locked --quiet --bins --target-dir target
BIN="$PREFIX/bin"
install -d "$BIN"
for binary in berth berth-pre-receive berth-post-receive; do
  install -m 0755 "target/release/$binary" "$BIN/$binary.new"
  mv -f "$BIN/$binary.new" "$BIN/$binary"
done
detail "Installed berth, berth-pre-receive, berth-post-receive in $BIN"
install -d "$PREFIX/share/bash-completion/completions" "$PREFIX/share/zsh/site-functions" \
  "$PREFIX/share/fish/vendor_completions.d" "$PREFIX/share/man/man1"
"$BIN/berth" completions bash >"$PREFIX/share/bash-completion/completions/berth"
"$BIN/berth" completions zsh >"$PREFIX/share/zsh/site-functions/_berth"
"$BIN/berth" completions fish >"$PREFIX/share/fish/vendor_completions.d/berth.fish"
"$BIN/berth" man >"$PREFIX/share/man/man1/berth.1"
detail "Installed shell completions (bash, zsh, fish) and the man page berth(1)"

if ! id "$BERTH_USER" >/dev/null 2>&1; then
  say "Creating user $BERTH_USER"
  useradd --system --create-home --home-dir "/home/$BERTH_USER" --shell /bin/sh "$BERTH_USER"
  # No password, but not locked: sshd refuses locked accounts even for key logins.
  usermod -p '*' "$BERTH_USER"
fi
BERTH_HOME=$(getent passwd "$BERTH_USER" | cut -d: -f6)
install -d -m 0700 -o "$BERTH_USER" -g "$BERTH_USER" "$BERTH_HOME/.ssh"
if getent group docker >/dev/null 2>&1; then
  usermod -aG docker "$BERTH_USER"
fi

say "Preparing $ROOT"
install -d -m 0755 "$ROOT" "$ROOT/data" "$ROOT/data/storage" "$ROOT/repos" "$ROOT/apps" "$ROOT/entries" "$ROOT/locks"
if [ ! -f "$ROOT/berth.toml" ]; then
  cat >"$ROOT/berth.toml" <<'TOML'
# berth server settings. See docs/app-toml.md and docs/cli.md.
#
# Branch whose pushes deploy, unless an app sets its own (default: main or master).
# deploy_branch = "main"
#
# The berth user's authorized_keys, written by `berth ssh-keys:add|remove`.
authorized_keys = "BERTH_HOME_PLACEHOLDER/.ssh/authorized_keys"
#
# What every app's app.toml may mount beyond its own directories and volumes.
# Per-app grants: berth storage:allow <app> <host-path|volume>.
[allowed]
# host_paths = ["/srv/shared"]
# volumes = ["shared-cache"]
#
# The proxy in front of every app (Caddy; see docs/serving.md).
# [proxy]
# http_port = 80
# https_port = 443
# tls = "off"                 # off | internal | acme (with acme_email)
# max_drain_seconds = 300     # the longest [web].drain_seconds an app gets
TOML
  sed -i "s#BERTH_HOME_PLACEHOLDER#$BERTH_HOME#" "$ROOT/berth.toml"
  detail "Wrote $ROOT/berth.toml"
fi

say "Re-installing hooks of existing apps"
BERTH_ROOT="$ROOT" "$BIN/berth" hooks:install
# State belongs to the berth user; data under data/storage keeps the owners apps were given.
chown -R "$BERTH_USER:$BERTH_USER" "$ROOT/repos" "$ROOT/apps" "$ROOT/entries" "$ROOT/locks"
chown "$BERTH_USER:$BERTH_USER" "$ROOT" "$ROOT/berth.toml" "$ROOT/data" "$ROOT/data/storage"
# Other host users may not traverse into app data (a set-uid file an app plants stays unreachable).
chmod 0700 "$ROOT/data"

if [ "$PROXY" = yes ]; then
  # Caddy runs as the owner of the root (berth), so the hooks reach its admin socket.
  install -d -o "$BERTH_USER" -g "$BERTH_USER" "$ROOT/proxy"
  BERTH_BIN="$BIN/berth" bash scripts/ensure-proxy.sh --root "$ROOT"
  chown -R "$BERTH_USER:$BERTH_USER" "$ROOT/proxy" "$ROOT/locks"
fi

say "berth $("$BIN/berth" --version | cut -d' ' -f2) is installed"
detail "State and data: $ROOT (BERTH_ROOT)"
detail "Next: berth ssh-keys:add <name> <key.pub>, then git push $BERTH_USER@<host>:<app> main"
