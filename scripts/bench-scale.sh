#!/usr/bin/env bash
# Rolling redeploys of a scaled app behind the proxy, measured (issue 12's Measure section).
# Writes its figures to $BENCH_OUT (default: a bench-scale section of BENCHMARKS.md).
#
#   bash scripts/bench-scale.sh
#
# With a private Caddy and BERTH_ROOT (scripts/lib/bench-proxy.sh), it deploys templates/serve
# twice, at its own domain each: with `[scale] web = 3` and with one instance. Then:
#   1. after one unmeasured redeploy (the second release), wrk through the proxy while
#      BENCH_REDEPLOYS (5) consecutive redeploys of the scale-3 app go through: failed
#      requests (non-2xx and socket errors), p50 / p99;
#   2. the time of each of those pushes against the time of a push of the one-instance app
#      under the same load: median rolling redeploy against 3× the median single redeploy.
# Needs root (apt-get, the engine). BENCH_BIN=<dir> uses built binaries; BENCH_KEEP=1 keeps
# the temp root.
REDEPLOYS=${BENCH_REDEPLOYS:-5}
source "$(dirname "$0")/lib/bench-proxy.sh"
SCALED=bc-$RUN-scaled SINGLE=bc-$RUN-single
BENCH_APPS="$SCALED $SINGLE"
OUT_MD=${BENCH_OUT:-$SRC/BENCHMARKS.md}

# timed_redeploys <app>: pushes $REDEPLOYS changes under wrk load through the proxy; writes
# each push's seconds to $RES/<app>-times and wrk's report to $RES/<app>-wrk.txt.
timed_redeploys() {
  local app=$1
  wrk -t2 -c16 -d600s --timeout 35s --latency -H "Host: $app.bench" "$PROXY/health" >"$RES/$app-wrk.txt" &
  local wrk_pid=$! start
  sleep 1
  : >"$RES/$app-times"
  for _ in $(seq 1 "$REDEPLOYS"); do
    start=$(date +%s.%N)
    push_change "$app"
    echo "$(date +%s.%N) - $start" | bc >>"$RES/$app-times"
  done
  # wrk prints its report on SIGINT.
  kill -INT "$wrk_pid"
  wait "$wrk_pid" || true
}
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }

say "Deploying a scale-3 app and a one-instance app"
deploy "$SCALED" "" "[scale]" "web = 3"
deploy "$SINGLE"
ROWS=$RES/rows.md
: >"$ROWS"
for app in "$SCALED" "$SINGLE"; do
  # A second release first, not measured: from the third one on, every instance starts at an
  # address the proxy is configured for (docs/serving.md), as on a server in use.
  push_change "$app"
  say "$REDEPLOYS redeploys of $app under load"
  timed_redeploys "$app"
done
read -r requests errors p50 p99 _ < <(wrk_figures "$RES/$SCALED-wrk.txt")
errors_text=$(wrk_errors "$RES/$SCALED-wrk.txt")
instances=$(docker ps --filter label=berth.app=$SCALED --format '{{.Names}}' | wc -l)
echo "| c1 | failed requests during $REDEPLOYS rolling redeploys of a scale-3 app ($instances instances after; wrk, 16 keep-alive connections) | $errors of $requests${errors_text:+ ($errors_text)} | p50 $p50 ms, p99 $p99 ms | 0 | $(verdict "$([ "$errors" = 0 ] && echo 1)") |" >>"$ROWS"
scaled=$(median "$RES/$SCALED-times"); single=$(median "$RES/$SINGLE-times")
three=$(printf '%.3f' "$(echo "3 * $single" | bc -l)")
ratio=$(printf '%.3f' "$(echo "$scaled / $three" | bc -l)")
echo "| c2 | rolling redeploy of 3 instances (median push of $REDEPLOYS, under load) | $scaled s | 3 × $single s = $three s (one-instance redeploy) | ${ratio}× | (information) | |" >>"$ROWS"
echo "| c3 | every push of each app, seconds | $(tr '\n' ' ' <"$RES/$SCALED-times") | $(tr '\n' ' ' <"$RES/$SINGLE-times") | | | |" >>"$ROWS"
write_section bench-scale "Rolling redeploys of a scaled app" "$ROWS"
