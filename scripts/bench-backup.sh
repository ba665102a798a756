#!/usr/bin/env bash
# Measures storage:backup and storage:restore against GNU tar on the same data, in one run,
# and writes the table into the "Measure: backup and restore" section of BENCHMARKS.md
# (between its markers). Needs root and the engine (like scripts/test.sh). Only measures: a
# missed target is written down, never an exit status.
#
#   bash scripts/bench-backup.sh        # BENCH_BYTES (default 1 GiB) in BENCH_FILES (10000)
#   BENCH_KIND=volume bash scripts/bench-backup.sh   # the data in a Docker volume, which
#                                       # berth reads through its helper container
#
# Backup: `berth storage:backup <app> | cat >/dev/null` vs `tar -cf - -C <dir> . | cat
# >/dev/null` (GNU tar writing straight to /dev/null skips reading the files, so both go
# through a pipe). Restore: `berth storage:restore <app> -i <backup>` vs `tar -xf <backup>` into
# an empty directory. Each side runs BENCH_RUNS (3) times, warm cache, alternating; the median
# is reported. Peak memory is the highest VmHWM of berth's processes (the CLI and the helper
# container's process), sampled every 20 ms, and GNU time's for tar.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BYTES="${BENCH_BYTES:-1073741824}"
FILES="${BENCH_FILES:-10000}"
RUNS="${BENCH_RUNS:-3}"
OUT="${BENCH_OUT:-BENCHMARKS.md}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SRC/target}"
cargo build --release --bins -q
BERTH="$CARGO_TARGET_DIR/release/berth"
bash scripts/ensure-engine.sh >/dev/null
mkdir -p /var/lib/berth-test-tmp
WORK="$(mktemp -d /var/lib/berth-test-tmp/bench-backup.XXXXXX)"
KIND="${BENCH_KIND:-entry}"
VOLUME="bench-bk-$(basename "$WORK" | tr -dc 'a-zA-Z0-9')"
trap 'BERTH_ROOT=$WORK/root "$BERTH" apps:destroy bench-bk --force >/dev/null 2>&1 || true; docker volume rm "$VOLUME" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
export BERTH_ROOT="$WORK/root"
"$BERTH" apps:create bench-bk >/dev/null
BACKUP_ARGS=()
if [ "$KIND" = volume ]; then
  docker volume create "$VOLUME" >/dev/null
  "$BERTH" storage:mount bench-bk "$VOLUME:/data" >/dev/null
  DATA="$(docker volume inspect -f '{{.Mountpoint}}' "$VOLUME")"
  BACKUP_ARGS=(--include-host-paths)
else
  "$BERTH" storage:create bench-bk-data >/dev/null
  "$BERTH" storage:mount bench-bk bench-bk-data --container-dir /data >/dev/null
  DATA="$BERTH_ROOT/data/storage/bench-bk-data"
fi
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "-----> Writing $BYTES bytes in $FILES files"
# One random seed, each file's first 8 bytes its number (so no two files are the same).
python3 - "$DATA" "$BYTES" "$FILES" <<'PY'
import os, sys
data, total, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seed = os.urandom(total // files)
for i in range(files):
    d = os.path.join(data, "d%d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%d" % i), "wb") as f:
        f.write(b"%08d" % i + seed[8:])
PY

# Peak VmHWM (KiB) of processes whose command line matches $1, while $2... runs.
peak() {
  local pattern="$1"; shift
  local max=0 file="$WORK/peak"
  ( while :; do
      for pid in $(pgrep -f "$pattern" || true); do
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${hwm:-0}" -gt "$max" ] && max=$hwm && echo "$max" >"$file"
      done
      sleep 0.02
    done ) &
  local sampler=$!
  "$@"
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  cat "$file" 2>/dev/null || echo 0
  rm -f "$file"
}
# Dirty pages are written back first (not timed), so no side pays for the one before it.
seconds() { local s; sync; s=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $s" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

berth_backup() { "$BERTH" storage:backup bench-bk "${BACKUP_ARGS[@]}" 2>/dev/null | cat >/dev/null; }
tar_backup() { tar -cf - -C "$DATA" . | cat >/dev/null; }
"$BERTH" storage:backup bench-bk "${BACKUP_ARGS[@]}" -o "$WORK/backup.tar" 2>/dev/null
berth_restore() { "$BERTH" storage:restore bench-bk "${BACKUP_ARGS[@]}" -i "$WORK/backup.tar" >/dev/null; }
tar_restore() { rm -rf "$WORK/x"; mkdir "$WORK/x"; tar -xf "$WORK/backup.tar" -C "$WORK/x"; }

: >"$WORK/times"
for ((r = 0; r < RUNS; r++)); do
  echo "-----> Round $((r + 1))/$RUNS"
  echo "bb $(seconds berth_backup)" >>"$WORK/times"
  echo "tb $(seconds tar_backup)" >>"$WORK/times"
  echo "tr $(seconds tar_restore)" >>"$WORK/times"
  echo "br $(seconds berth_restore)" >>"$WORK/times"
  # Each restore keeps what it replaced: drop it so the disk does not fill.
  "$BERTH" storage:prune-restores bench-bk --force >/dev/null
done
med() { awk -v k="$1" '$1 == k {print $2}' "$WORK/times" | median; }
bb=$(med bb); tb=$(med tb); br=$(med br); tr=$(med tr)
mem_bb=$(peak "storage:backup bench-bk|internal:backup-read" berth_backup)
mem_br=$(peak "storage:restore bench-bk|internal:backup-restore" berth_restore)
"$BERTH" storage:prune-restores bench-bk --force >/dev/null
mem_tb=$( { /usr/bin/time -f %M tar -cf - -C "$DATA" . | cat >/dev/null; } 2>&1 | tail -1)
rm -rf "$WORK/x"; mkdir "$WORK/x"
mem_tr=$( { /usr/bin/time -f %M tar -xf "$WORK/backup.tar" -C "$WORK/x"; } 2>&1 | tail -1)
mib=$(echo "scale=1; $BYTES / 1048576" | bc)
rate() { echo "scale=0; $mib / $1" | bc; }
ratio() { echo "scale=2; $2 / $1" | bc; }
verdict() { if [ "$(echo "$1 >= $2" | bc)" = 1 ]; then echo "met"; else echo "**missed**"; fi; }
rb=$(ratio "$bb" "$tb"); rr=$(ratio "$br" "$tr")
table="| $mib MiB in $FILES files ($KIND), median of $RUNS | berth | GNU tar | berth ÷ tar throughput | target |
|---|---|---|---|---|
| backup (to a pipe) | ${bb}s, $(rate "$bb") MiB/s | ${tb}s, $(rate "$tb") MiB/s | $rb | ≥ 0.9: $(verdict "$rb" 0.9) |
| restore (verify + stage + swap) | ${br}s, $(rate "$br") MiB/s | ${tr}s, $(rate "$tr") MiB/s | $rr | ≥ 0.8: $(verdict "$rr" 0.8) |
| peak memory, backup | $((mem_bb / 1024)) MiB | $((mem_tb / 1024)) MiB | | ≤ 64 MiB: $(verdict "64" "$((mem_bb / 1024))") |
| peak memory, restore | $((mem_br / 1024)) MiB | $((mem_tr / 1024)) MiB | | ≤ 64 MiB: $(verdict "64" "$((mem_br / 1024))") |

Measured $(date -u +%Y-%m-%d\ %H:%M) UTC at commit $(git rev-parse --short HEAD) on $(nproc) cores, $(uname -r), load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "$table"
python3 - "$OUT" "$table" "$KIND" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
kind = sys.argv[3]
start, end = "<!-- backup-bench:start -->", "<!-- backup-bench:end -->"
if kind != "entry":
    start, end = "<!-- backup-bench-%s:start -->" % kind, "<!-- backup-bench-%s:end -->" % kind
text = open(path).read()
if start not in text:
    text += "\n## Measure: backup and restore\n\n`bash scripts/bench-backup.sh` (see its header for what each side runs).\n\n" + start + "\n" + end + "\n"
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + start + "\n" + table + "\n" + end + tail)
PY
