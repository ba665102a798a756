# Shared by the benchmarks that serve apps behind a private Caddy (scripts/bench-serve.sh,
# scripts/bench-scale.sh); sourced, not run. Sets SRC, BIN, ROOT, RES, PROXY and a cleanup trap
# that destroys the apps in BENCH_APPS (set by the script, read at exit) and stops the Caddy,
# and RUN, the run's own tag: container names are the engine's, shared by every berth root on
# it, so a script names its apps and containers with it, and a bench run beside (or a cleanup
# of) another leaves them alone.
# BENCH_BIN=<dir> uses the berth binaries there instead of building release ones.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SRC=$PWD
say() { echo "-----> $*" >&2; }

need=()
for tool in wrk hyperfine jq curl git bc; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  say "Installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/ensure-engine.sh >&2
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  say "Building release binaries"
  cargo build --release --bins --quiet
  BIN=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release
fi

ROOT=$(mktemp -d /var/lib/berth-bench-proxy.XXXXXX)
RES=$ROOT/results
RUN=$(basename "$ROOT" | tr 'A-Z' 'a-z' | tr -dc 'a-z0-9' | tail -c 6)
mkdir -p "$RES"
export BERTH_ROOT=$ROOT GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@berth.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@berth.invalid
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
printf '[proxy]\nhttp_port = %s\nhttps_port = %s\nbind = "127.0.0.1"\n' "$HTTP_PORT" "$(free_port)" >"$ROOT/berth.toml"
proxy_cleanup() {
  for app in ${BENCH_APPS:-}; do
    "$BIN/berth" apps:destroy "$app" --force --purge-storage >/dev/null 2>&1 || true
  done
  if declare -F bench_cleanup >/dev/null; then bench_cleanup; fi
  [ -f "$ROOT/proxy/caddy.pid" ] && kill "$(cat "$ROOT/proxy/caddy.pid")" 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap proxy_cleanup EXIT
BERTH_BIN=$BIN/berth bash scripts/ensure-proxy.sh --background --root "$ROOT" >&2
PROXY=http://127.0.0.1:$HTTP_PORT

# deploy <app> [<line for app.toml>...]: creates the app at <app>.bench and pushes
# templates/serve with the lines appended to its app.toml.
deploy() {
  local app=$1 work=$ROOT/work-$1
  shift
  "$BIN/berth" apps:create "$app" >/dev/null
  "$BIN/berth" domains:add "$app" "$app.bench" >/dev/null
  cp -a "$SRC/templates/serve" "$work"
  for line in "$@"; do echo "$line" >>"$work/app.toml"; done
  git -C "$work" init -q -b main && git -C "$work" add -A && git -C "$work" commit -qm serve
  git -C "$work" remote add berth "$ROOT/repos/$app.git"
  git -C "$work" push -q berth main 2>"$RES/$app-first.log" || { cat "$RES/$app-first.log" >&2; exit 1; }
}
push_change() { # <app>: commits a change and pushes it
  local work=$ROOT/work-$1
  date +%s%N >>"$work/www/bench.txt"
  git -C "$work" add -A && git -C "$work" commit -qm change
  git -C "$work" push -q berth main 2>>"$RES/$1-pushes.log"
}
# wrk's figures as "requests errors p50_ms p99_ms rps" from its --latency report.
wrk_figures() {
  awk '
    / 50%/ { p50 = $2 } / 99%/ { p99 = $2 }
    /requests in/ { requests = $1 }
    /Non-2xx/ { errors += $NF }
    /Socket errors/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
    /Requests\/sec/ { rps = $2 }
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    END { printf "%s %d %.2f %.2f %s\n", requests, errors, ms(p50), ms(p99), rps }' "$1"
}
# wrk's error lines of a report, joined with ';' (none: empty).
wrk_errors() { { grep -E 'Socket errors|Non-2xx' "$1" || true; } | sed 's/^ *//' | tr '\n' ';' | sed 's/;$//'; }
# first_upstream <app>: the address of the first web instance of the app's last release.
first_upstream() {
  sed -n 's/^web_upstreams = \["\([^"]*\)".*/\1/p' "$ROOT/apps/$1/releases.toml" | tail -1
}
# write_section <marker> <title> <rows file>: puts a table of the rows between the marker's
# begin/end comments in $OUT_MD (appended when absent).
write_section() {
  local marker=$1 title=$2 rows=$3 section=$RES/section-$1.md
  say "Writing $OUT_MD"
  {
    echo "<!-- $marker:begin (written by scripts/$marker.sh; edit outside these markers) -->"
    echo "## $title"
    echo
    echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC') at commit \`$(git -C "$SRC" rev-parse --short HEAD)\`, caddy $(caddy version | cut -d' ' -f1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), load average $(cut -d' ' -f1-3 /proc/loadavg), \`nproc\` = $(nproc)."
    echo
    echo "| # | what | berth | floor / detail | ratio / difference | target | result |"
    echo "|---|---|---|---|---|---|---|"
    cat "$rows"
    echo "<!-- $marker:end -->"
  } >"$section"
  if grep -q "<!-- $marker:begin" "$OUT_MD" 2>/dev/null; then
    awk -v file="$section" -v begin="<!-- $marker:begin" -v end="<!-- $marker:end" '
      index($0, begin) == 1 { while ((getline line < file) > 0) print line; skip = 1; next }
      index($0, end) == 1 { skip = 0; next }
      !skip' "$OUT_MD" >"$OUT_MD.new" && mv "$OUT_MD.new" "$OUT_MD"
  else
    { echo; cat "$section"; } >>"$OUT_MD"
  fi
  cat "$section" >&2
}
verdict() { [ "$1" = 1 ] && echo '**met**' || echo '**missed**'; } # <1 when met>
