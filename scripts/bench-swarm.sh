#!/usr/bin/env bash
# Push-to-serving on the 2-node test swarm (issue 15's Measure section), against the floor of
# the same work by hand. Prints a markdown table of each round and the medians.
#
#   bash scripts/bench-swarm.sh            # BENCH_ROUNDS=5, BERTH_BIN=<target>/debug
#
# Both sides deploy templates/web pinned to the manager with its app directory bound, update
# order start-first behind the same health check (GET /health, every second), monitor 1 s,
# and change www/index.html each round so the image build does the same work:
#   berth: `git push` to a swarm app (build, push to the registry, service update, converge)
#          until the new release answers at its recorded upstream;
#   hand:  docker build, docker push, docker service update --detach --image <digest>, then
#          poll until the update is completed and the new task answers the new page.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
ROUNDS=${BENCH_ROUNDS:-5}
TARGET=${CARGO_TARGET_DIR:-$SRC/target}
BIN=${BERTH_BIN:-$TARGET/debug}
REGISTRY=127.0.0.1:5000
say() { echo "-----> $*" >&2; }
now() { date +%s.%N; }

bash scripts/ensure-swarm.sh >&2
ROOT=$(mktemp -d /var/lib/berth-bench-swarm.XXXXXX)
export BERTH_ROOT=$ROOT/root PATH="$BIN:$PATH" BERTH_CHECK_SECONDS=1 BERTH_HEALTH_TIMEOUT=30
mkdir -p "$BERTH_ROOT"
printf '[swarm]\nregistry = "%s"\n' "$REGISTRY" >"$BERTH_ROOT/berth.toml"
APP=swbench
HAND=swbench-hand
MANAGER=$(docker node inspect self --format '{{.Description.Hostname}}')
cleanup() {
  berth apps:destroy "$APP" --force --purge-storage >/dev/null 2>&1 || true
  docker service rm "$HAND" >/dev/null 2>&1 || true
  rm -rf "$ROOT"
}
trap cleanup EXIT

work() {
  cp -a "$SRC/templates/web" "$1"
  git -C "$1" init -q -b main
  git -C "$1" -c user.email=b@b -c user.name=bench add -A
  git -C "$1" -c user.email=b@b -c user.name=bench commit -qm one
}
change() { # $1 work tree, $2 page
  echo "$2" >"$1/www/index.html"
  git -C "$1" -c user.email=b@b -c user.name=bench commit -qam "round $2"
}
wait_page() { # $1 url, $2 expected page
  for _ in $(seq 1 600); do
    [ "$(curl -fsS "$1/" 2>/dev/null)" = "$2" ] && return
    sleep 0.05
  done
  echo "timed out waiting for $1" >&2
  exit 1
}

say "berth app $APP on the swarm"
berth apps:create "$APP" >/dev/null
berth scheduler:set "$APP" selected docker-swarm >/dev/null
work "$ROOT/berth-work"
git -C "$ROOT/berth-work" push -q "$BERTH_ROOT/repos/$APP.git" main 2>/dev/null
berth_upstream() {
  local current
  current=$(sed -n 's/^current_release = //p' "$BERTH_ROOT/apps/$APP/state.toml")
  berth releases "$APP" --format json | jq -r ".[] | select(.number == $current) | .web_upstreams[0]"
}

say "hand service $HAND"
work "$ROOT/hand-work"
mkdir -p "$ROOT/hand-data" && chown 1000:1000 "$ROOT/hand-data"
hand_image() { # $1 tag: builds and pushes, prints the digest reference
  DOCKER_BUILDKIT=0 docker build -q -t "$REGISTRY/$HAND:$1" "$ROOT/hand-work" >/dev/null
  docker push -q "$REGISTRY/$HAND:$1" >/dev/null
  docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$REGISTRY/$HAND:$1" | grep "^$REGISTRY/$HAND@" | head -1
}
docker service create -q --name "$HAND" --constraint "node.hostname==$MANAGER" \
  --mount "type=bind,source=$ROOT/hand-data,target=/app/storage" \
  --publish mode=host,target=5000 --update-order start-first --update-monitor 1s \
  --update-failure-action rollback --health-cmd 'wget -q -O /dev/null http://127.0.0.1:5000/health' \
  --health-interval 1s --health-retries 30 "$(hand_image 0)" >/dev/null
hand_url() {
  local task
  task=$(docker service ps -q --filter desired-state=running "$HAND" | head -1)
  echo "http://127.0.0.1:$(docker inspect --format '{{(index .Status.PortStatus.Ports 0).PublishedPort}}' "$task")"
}

echo "| round | berth (s) | by hand (s) | ratio |"
echo "|---|---|---|---|"
berth_times=() hand_times=()
for round in $(seq 1 "$ROUNDS"); do
  # Pages differ between the sides: one side's build must not warm the other's cache.
  change "$ROOT/berth-work" "<p>berth $round</p>"
  start=$(now)
  git -C "$ROOT/berth-work" push -q "$BERTH_ROOT/repos/$APP.git" main 2>/dev/null
  wait_page "http://$(berth_upstream)" "<p>berth $round</p>"
  b=$(echo "$(now) - $start" | bc)

  change "$ROOT/hand-work" "<p>hand $round</p>"
  start=$(now)
  docker service update -q --detach --image "$(hand_image "$round")" "$HAND" >/dev/null
  until [ "$(docker service inspect --format '{{.UpdateStatus.State}}' "$HAND")" = completed ]; do sleep 0.05; done
  wait_page "$(hand_url)" "<p>hand $round</p>"
  h=$(echo "$(now) - $start" | bc)
  berth_times+=("$b") hand_times+=("$h")
  printf '| %s | %.2f | %.2f | %.2f |\n' "$round" "$b" "$h" "$(echo "$b / $h" | bc -l)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${berth_times[@]}") mh=$(median "${hand_times[@]}")
printf '| **median** | **%.2f** | **%.2f** | **%.2f** |\n' "$mb" "$mh" "$(echo "$mb / $mh" | bc -l)"
