#!/usr/bin/env bash
# Serving behind the proxy, measured (issue 11's Measure section). Writes its figures to
# $BENCH_OUT (default: a serve section of BENCHMARKS.md, between its own markers).
#
#   bash scripts/bench-serve.sh
#
# With a private Caddy (scripts/ensure-proxy.sh --background) on a loopback port and a private
# BERTH_ROOT, it deploys templates/serve (its web process records each SIGTERM in its storage)
# as a normal app and as an exclusive app, each at its own domain, then:
#   1. runs Debian's wrk through the proxy while 20 consecutive redeploys go through: failed
#      requests (non-2xx and socket errors), p50 / p99; afterwards, the SIGTERM records;
#   2. runs wrk against the proxy and against the container directly (its address on berth's
#      network), the same load, alternately (BENCH_ROUNDS rounds, 3): the medians' throughput
#      ratio and added p50;
#   3. push-to-serving through the proxy against the docker CLI floor of scripts/bench.sh
#      part a (build from git archive, run, poll /health, remove the old one), in one hyperfine run.
# Needs root (apt-get, the engine). Environment: BENCH_REDEPLOYS (20), BENCH_SECONDS (10, wrk's
# duration for 2), BENCH_PUSH_RUNS (6), BENCH_KEEP=1 keeps the temp root.
REDEPLOYS=${BENCH_REDEPLOYS:-20}
SECONDS_2=${BENCH_SECONDS:-10}
PUSH_RUNS=${BENCH_PUSH_RUNS:-6}
bench_cleanup() { docker rm -f "$BASE" "$BASE-next" >/dev/null 2>&1 || true; }
source "$(dirname "$0")/lib/bench-proxy.sh"
NORMAL=bs-$RUN-normal EXCLUSIVE=bs-$RUN-exclusive
BENCH_APPS="$NORMAL $EXCLUSIVE"
BASE=berth-bench-serve-base-$RUN
OUT_MD=${BENCH_OUT:-$SRC/BENCHMARKS.md}
# During the redeploys wrk waits up to 35 s for an answer (the proxy holds requests up to
# 30 s): a held request is slow, not failed.

ROWS=$RES/rows.md
: >"$ROWS"
for kind in normal exclusive; do
  app=bs-$RUN-$kind
  say "1. $REDEPLOYS redeploys of the $kind app under load"
  if [ $kind = exclusive ]; then deploy "$app" "exclusive = true"; else deploy "$app"; fi
  start=$(date +%s.%N); push_change "$app"; one=$(echo "$(date +%s.%N) - $start" | bc)
  duration=$(printf '%.0f' "$(echo "($REDEPLOYS + 1) * $one * 3 + 5" | bc)")
  : >"$ROOT/data/apps/$app/state/sigterm.log"
  wrk_start=$(date +%s)
  wrk -t2 -c16 -d"${duration}s" --timeout 35s --latency -H "Host: $app.bench" "$PROXY/health" >"$RES/$app-wrk.txt" &
  wrk_pid=$!
  sleep 1
  done_deploys=0
  for _ in $(seq 1 "$REDEPLOYS"); do push_change "$app" && done_deploys=$((done_deploys + 1)); done
  # The figures are those of the redeploys: wrk stops (and reports) once they are done.
  sleep 1
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  elapsed=$(($(date +%s) - wrk_start))
  read -r requests errors p50 p99 _ < <(wrk_figures "$RES/$app-wrk.txt")
  records=$(wc -l <"$ROOT/data/apps/$app/state/sigterm.log")
  errors_text=$(wrk_errors "$RES/$app-wrk.txt")
  echo "| s1-$kind | failed requests during $done_deploys redeploys of the $kind app (wrk, 16 keep-alive connections, ${elapsed} s) | $errors of $requests${errors_text:+ ($errors_text)} | p50 $p50 ms, p99 $p99 ms | 0 | $([ "$errors" = 0 ] && echo '**met**' || echo '**missed**') |" >>"$ROWS"
  echo "| s2-$kind | SIGTERM records in the app's storage after the $done_deploys redeploys | $records | | $done_deploys | $([ "$records" -ge "$done_deploys" ] && echo '**met**' || echo '**missed**') |" >>"$ROWS"
done

say "2. proxy overhead: the same load through the proxy and directly, alternately"
upstream=$(first_upstream "$NORMAL")
# Connections closed by the load before (the redeploys', the other side's) sit in TIME_WAIT for
# 60 s, on the host and in the app's container; tens of thousands of them slow every new
# connection down. Each run starts once they are under 1000, and the sides alternate so a
# change of load on the machine touches both.
time_waits() {
  local n pid
  n=$(ss -Htan state time-wait | wc -l)
  for pid in $(docker ps -q --filter "name=$NORMAL" | xargs -r docker inspect -f '{{.State.Pid}}'); do
    n=$((n + $(nsenter --net="/proc/$pid/ns/net" ss -Htan state time-wait | wc -l)))
  done
  echo "$n"
}
settle() {
  for _ in $(seq 90); do [ "$(time_waits)" -lt 1000 ] && return; sleep 1; done
  say "still $(time_waits) connections in TIME_WAIT after 90 s; measuring anyway"
}
ROUNDS_2=${BENCH_ROUNDS:-3}
for round in $(seq "$ROUNDS_2"); do
  settle
  wrk -t2 -c16 -d"${SECONDS_2}s" --latency -H "Host: $NORMAL.bench" "$PROXY/health" >"$RES/proxied-$round.txt"
  settle
  wrk -t2 -c16 -d"${SECONDS_2}s" --latency "http://$upstream/health" >"$RES/direct-$round.txt"
done
# The sides' figures: the median round's by throughput.
median_round() { # <side>: the report of the round with the median req/s
  for f in "$RES/$1"-*.txt; do echo "$(wrk_figures "$f" | cut -d' ' -f5) $f"; done |
    sort -n | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }'
}
cp "$(median_round proxied)" "$RES/proxied.txt"
cp "$(median_round direct)" "$RES/direct.txt"
read -r _ perr pp50 _ prps < <(wrk_figures "$RES/proxied.txt")
read -r _ derr dp50 _ drps < <(wrk_figures "$RES/direct.txt")
ratio=$(printf '%.3f' "$(echo "$prps / $drps" | bc -l)")
added=$(printf '%+.2f' "$(echo "$pp50 - $dp50" | bc -l)")
# A fast error is not throughput: a run with failed requests does not meet the target.
s3_met=$( [ "$perr" = 0 ] && [ "$derr" = 0 ] && echo "$ratio >= 0.9" | bc | grep -q 1 && echo '**met**' || echo '**missed**')
echo "| s3 | throughput through the proxy / direct to the container (median of $ROUNDS_2 alternating runs of $SECONDS_2 s each, 16 connections; failed requests $perr / $derr) | $prps req/s | $drps req/s | ${ratio}× | ≥ 0.9× | $s3_met |" >>"$ROWS"
echo "| s4 | added p50 latency of the proxy | $pp50 ms | $dp50 ms | $added ms | (information) | |" >>"$ROWS"

say "3. push-to-serving through the proxy vs the docker CLI floor"
work=$ROOT/work-$NORMAL
data=$ROOT/base-data
mkdir -p "$data" && chown 1000:1000 "$data"
cat >"$ROOT/baseline.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
cd "$work"
git archive HEAD | DOCKER_BUILDKIT=0 docker build -q -t $BASE:next - >/dev/null
docker run -d --name $BASE-next --user 1000 -e PORT=5000 -v $data:/app/storage -p 5000 --restart unless-stopped $BASE:next >/dev/null
port=\$(docker port $BASE-next 5000/tcp | head -1); port=\${port##*:}
until [ "\$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:\$port/health")" = 200 ]; do sleep 0.05; done
docker rm -f $BASE >/dev/null 2>&1 || true
docker rename $BASE-next $BASE
SH
bash "$ROOT/baseline.sh"
change="date +%s%N >>$work/www/bench.txt && git -C $work add -A && git -C $work commit -qm change"
hyperfine --style basic --runs "$PUSH_RUNS" --prepare "$change" --export-json "$RES/push.json" \
  -n "berth: git push, served through the proxy" "git -C $work push -q berth main" \
  -n "baseline: docker CLI" "bash $ROOT/baseline.sh" >&2
b=$(jq '.results[0].median' "$RES/push.json"); f=$(jq '.results[1].median' "$RES/push.json")
ratio=$(printf '%.3f' "$(echo "$b / $f" | bc -l)")
echo "| s5 | push-to-serving through the proxy (median of $PUSH_RUNS) | $(printf '%.3f' "$b") s | $(printf '%.3f' "$f") s (docker CLI) | ${ratio}× | ≤ 1.05× | $(echo "$ratio <= 1.05" | bc | grep -q 1 && echo '**met**' || echo '**missed**') |" >>"$ROWS"

write_section bench-serve "Serving behind the proxy" "$ROWS"
