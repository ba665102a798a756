#!/usr/bin/env bash
# Measures berth against the engine's own floor and writes the results into BENCHMARKS.md.
#
#   bash scripts/bench.sh
#
# Builds the release binaries and the benches, prepares synthetic repositories in a temp dir,
# then runs, each comparison's two sides in the same hyperfine run:
#   a. push-to-serving of templates/web vs the same engine work done with the docker CLI;
#   b. reading + checking app.toml from a commit vs `git cat-file -p <sha>:app.toml`;
#   c. the build context from the git tree vs `git archive`, and its peak memory;
#   d. `storage:report` over 1000 apps x 5 mounts and `storage:list <app>`.
# It only measures: a missed target is written down, never turned into a failure. Needs root
# (apt-get, the engine) like scripts/test.sh. Takes 3 to 5 minutes once the build is done.
#
# Environment: BENCH_ONLY="a b c d crit" runs only those parts (the table keeps only their rows);
# BENCH_KEEP=1 keeps the temp dir; BENCH_PUSH_RUNS (8 rounds), BENCH_OUT (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
ONLY=" ${BENCH_ONLY:-a b c d crit} "
PUSH_RUNS=${BENCH_PUSH_RUNS:-8}
OUT_MD=${BENCH_OUT:-$SRC/BENCHMARKS.md}

say() { echo "-----> $*" >&2; }
wants() { [[ $ONLY == *" $1 "* ]]; }

# --- tools ------------------------------------------------------------------------------------
need=()
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  say "Installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo " !     cargo is required" >&2; exit 1; }
if wants a; then bash scripts/ensure-engine.sh >&2; fi

# --- build ------------------------------------------------------------------------------------
say "Building release binaries and benches"
cargo build --release --bins --quiet
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET/release
cargo bench --no-run --quiet --bench read_manifest --bench tar_stream --bench git_read \
  --message-format=json >"$TARGET/bench-artifacts.json"
bench_exe() {
  jq -r --arg name "$1" \
    'select(.reason == "compiler-artifact" and .target.name == $name and .executable != null) | .executable' \
    "$TARGET/bench-artifacts.json" | tail -1
}
READ_MANIFEST=$(bench_exe read_manifest)
TAR_STREAM=$(bench_exe tar_stream)
[ -x "$READ_MANIFEST" ] && [ -x "$TAR_STREAM" ] || { echo " !     bench binaries not found" >&2; exit 1; }

# --- temp dir and cleanup ---------------------------------------------------------------------
BENCH_DIR=$(mktemp -d /tmp/berth-bench.XXXXXX) # no spaces: commands below are plain strings
RES=$BENCH_DIR/results
mkdir -p "$RES"
ROWS=$RES/rows.md        # the results table
CMDS=$RES/commands.md    # every command that produced a number
NOTES=$RES/notes.md      # per-part details (tables of all sizes)
: >"$ROWS"; : >"$CMDS"; : >"$NOTES"
WEB_APP=berth-bench-web
BASE=berth-bench-base
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@berth.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@berth.invalid

cleanup() {
  if [ -d "$BENCH_DIR/push-root/apps/$WEB_APP" ]; then
    BERTH_ROOT=$BENCH_DIR/push-root "$BIN/berth" apps:destroy "$WEB_APP" --force --purge-storage \
      >/dev/null 2>&1 || true
  fi
  if command -v docker >/dev/null 2>&1; then
    docker rm -f "$BASE" "$BASE-next" >/dev/null 2>&1 || true
    for image in $(docker images -q --filter "label=berth-bench=baseline" 2>/dev/null | sort -u); do
      docker rmi -f "$image" >/dev/null 2>&1 || true
    done
  fi
  if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$BENCH_DIR"; else say "Kept $BENCH_DIR"; fi
}
trap cleanup EXIT

# --- helpers ----------------------------------------------------------------------------------
# Records a command as run, with the temp dir written as $BENCH_DIR.
record() {
  local line="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=%+,@-]+$ ]]; then
      line+=" $arg"
    else
      line+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  echo "   ${line//$BENCH_DIR/\$BENCH_DIR}" >>"$CMDS"
}
# hyperfine with JSON export into $RES/<name>.json; its report goes to stderr.
hf() {
  local name=$1
  shift
  record hyperfine "$@"
  hyperfine --style basic --export-json "$RES/$name.json" "$@" >&2
}
# Two commands measured in alternating rounds: hyperfine runs each once per round (after
# <prepare>), the first command first in odd rounds and second in even ones, so that a change of
# load on the machine during the minutes the rounds take falls on both sides alike. Round 0 is a
# warm-up and is dropped. The rounds are merged into $RES/<name>.json, in the order given.
#   hf_rounds <name> <rounds> <prepare> <name1> <command1> <name2> <command2>
hf_rounds() {
  local name=$1 rounds=$2 prepare=$3 n1=$4 c1=$5 n2=$6 c2=$7 r
  record hyperfine --runs 1 --prepare "$prepare" -n "$n1" "$c1" -n "$n2" "$c2"
  echo "    # ... $rounds times (plus a warm-up round), the order of the two commands swapped every other round" >>"$CMDS"
  for r in $(seq 0 "$rounds"); do
    if ((r % 2)); then
      hyperfine --style basic --runs 1 --prepare "$prepare" --export-json "$RES/$name.r$r.json" \
        -n "$n1" "$c1" -n "$n2" "$c2" >&2
    else
      hyperfine --style basic --runs 1 --prepare "$prepare" --export-json "$RES/$name.r$r.json" \
        -n "$n2" "$c2" -n "$n1" "$c1" >&2
    fi
  done
  rm "$RES/$name.r0.json"
  jq -s --arg n1 "$n1" --arg n2 "$n2" '[.[].results[]] as $all | {results: [$n1, $n2 | . as $c
    | ($all | map(select(.command == $c)) | map(.times[])) as $t | ($t | sort) as $s
    | ($t | length) as $n | ($t | add / $n) as $m
    | {command: $c, times: $t, mean: $m,
       median: (if $n % 2 == 1 then $s[($n - 1) / 2] else ($s[$n / 2 - 1] + $s[$n / 2]) / 2 end),
       stddev: (if $n > 1 then (($t | map((. - $m) * (. - $m)) | add) / ($n - 1) | sqrt) else 0 end)}]}' \
    "$RES/$name".r*.json >"$RES/$name.json"
  jq -r '.results[] | "  \(.command): median \(.median) s, mean \(.mean) s ± \(.stddev) over \(.times | length) runs"' \
    "$RES/$name.json" >&2
}
# median / stddev (seconds) of command <index> of a hyperfine export. Medians, not means: other
# work on the machine shows up as outliers, which move the mean and not the median.
mean() { jq -r ".results[$2].median" "$RES/$1.json"; }
stddev() { jq -r ".results[$2].stddev // 0" "$RES/$1.json"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
ms() { calc '%.2f' "$1 * 1000"; }
# human time of a mean and stddev in seconds
human() {
  awk -v m="$1" -v s="$2" 'BEGIN {
    if (m >= 1) printf "%.3f s ± %.3f", m, s;
    else if (m >= 0.001) printf "%.2f ms ± %.2f", m * 1e3, s * 1e3;
    else printf "%.1f µs ± %.1f", m * 1e6, s * 1e6 }'
}
# Instructions a command executes (callgrind), in full.
instructions() {
  record valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@"
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
verdict() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**missed**"; fi; }
# A row of the results table; rows are sorted by their first cell.
row() {
  local line="| $1" cell
  shift
  for cell in "$@"; do line+=" | $cell"; done
  echo "$line |" >>"$ROWS"
}

# --- synthetic repositories (git fast-import) -------------------------------------------------
REPOS=$BENCH_DIR/repos
mkdir -p "$REPOS"
STAMP=1700000000
# data <len> + bytes of a file, as fast-import reads inline content
inline_file() {
  printf 'M 100644 inline %s\ndata %d\n' "$2" "$(wc -c <"$1")"
  cat "$1"
  printf '\n'
}
commit_header() {
  printf 'commit refs/heads/main\ncommitter bench <bench@berth.invalid> %d +0000\ndata 7\nsynth.\n' "$1"
}
# <n> small files, 100 to a directory, 100 directories to a top-level one
# (d00/d00/f000000.txt ...), so the root stays small as in most repositories; with "wide", the
# directories are all at the root (d0000/f000000.txt ...: 1000 root entries for 100 000 files).
small_files() {
  awk -v n="$1" -v wide="${2:-}" 'BEGIN {
    for (i = 0; i < n; i++) {
      content = sprintf("file %d of %d\n", i, n)
      dir = int(i / 100)
      if (wide) path = sprintf("d%04d/f%06d.txt", dir, i)
      else path = sprintf("d%02d/d%02d/f%06d.txt", int(dir / 100), dir % 100, i)
      printf "M 100644 inline %s\ndata %d\n%s\n", path, length(content), content
    } }'
}
import_repo() {
  local name=$1
  git init -q --bare "$REPOS/$name.git"
  git -C "$REPOS/$name.git" fast-import --quiet
}
make_repos() {
  local n
  say "Generating synthetic repositories in $REPOS"
  for n in 10 10000 100000; do
    {
      commit_header $STAMP
      inline_file "$SRC/templates/web/app.toml" app.toml
      inline_file "$SRC/templates/web/Dockerfile" Dockerfile
      small_files $((n - 2))
    } | import_repo "files-$n"
  done
  {
    commit_header $STAMP
    inline_file "$SRC/templates/web/app.toml" app.toml
    inline_file "$SRC/templates/web/Dockerfile" Dockerfile
    small_files 99998 wide
  } | import_repo files-100000-wide
  # 10 000 commits, each changing one of 8 files.
  {
    commit_header $STAMP
    inline_file "$SRC/templates/web/app.toml" app.toml
    inline_file "$SRC/templates/web/Dockerfile" Dockerfile
    awk -v stamp=$STAMP 'BEGIN {
      for (i = 1; i < 10000; i++) {
        printf "commit refs/heads/main\ncommitter bench <bench@berth.invalid> %d +0000\ndata 7\nsynth.\n", stamp + i
        content = sprintf("change %d\n", i)
        printf "M 100644 inline notes/n%d.txt\ndata %d\n%s\n", i % 8, length(content), content
      } }'
  } | import_repo history-10000
  # 200 incompressible files of 1 MiB and 10 000 small ones: a 200 MB build context.
  {
    commit_header $STAMP
    inline_file "$SRC/templates/web/app.toml" app.toml
    inline_file "$SRC/templates/web/Dockerfile" Dockerfile
    for n in $(seq -w 1 200); do
      printf 'M 100644 inline big/blob%s.bin\ndata 1048576\n' "$n"
      head -c 1048576 /dev/urandom
      printf '\n'
    done
    small_files 10000
  } | import_repo ctx-200mb
  for n in files-10 files-10000 files-100000 files-100000-wide history-10000 ctx-200mb; do
    echo "$n $(git -C "$REPOS/$n.git" rev-parse main) $(git -C "$REPOS/$n.git" ls-tree -r main | wc -l) files, $(git -C "$REPOS/$n.git" ls-tree main | wc -l) at the root, $(git -C "$REPOS/$n.git" rev-list --count main) commits, $(du -sh "$REPOS/$n.git" | cut -f1)" >>"$RES/repos.txt"
  done
  cat "$RES/repos.txt" >&2
}
sha_of() { git -C "$REPOS/$1.git" rev-parse main; }
if wants b || wants c || wants crit; then make_repos; fi

# --- a. push-to-serving -----------------------------------------------------------------------
bench_push() {
  say "a. push-to-serving of templates/web vs the docker CLI"
  local root=$BENCH_DIR/push-root work=$BENCH_DIR/work data=$BENCH_DIR/base-data/uploads
  mkdir -p "$root" "$data"
  chown 1000:1000 "$data"
  export BERTH_ROOT=$root
  "$BIN/berth" apps:create "$WEB_APP" >/dev/null
  cp -a "$SRC/templates/web" "$work"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" commit -qm "templates/web"
  git -C "$work" remote add berth "$root/repos/$WEB_APP.git"
  # The baseline: what berth asks of the engine, with the docker CLI (legacy builder, as the
  # engine API berth uses): build from `git archive`, start the new container beside the old one
  # with the same bind mount, port, user and restart policy, poll /health every 50 ms until
  # 200, then remove the old one.
  cat >"$BENCH_DIR/baseline.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
cd "$work"
git archive HEAD | DOCKER_BUILDKIT=0 docker build -q --label berth-bench=baseline -t $BASE:next - >/dev/null
docker run -d --name $BASE-next --user 1000 -e PORT=5000 -v $data:/app/storage -p 5000 \\
  --restart unless-stopped $BASE:next >/dev/null
port=\$(docker port $BASE-next 5000/tcp | head -1)
port=\${port##*:}
until [ "\$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:\$port/health")" = 200 ]; do
  sleep 0.05
done
docker rm -f $BASE >/dev/null 2>&1 || true
docker rename $BASE-next $BASE
EOF
  chmod +x "$BENCH_DIR/baseline.sh"
  say "First deploys (not measured)"
  git -C "$work" push -q berth main 2>"$RES/first-push.log" || { cat "$RES/first-push.log" >&2; exit 1; }
  bash "$BENCH_DIR/baseline.sh"
  local change="date +%s%N >>$work/www/bench.txt && git -C $work add -A && git -C $work commit -qm change"
  local empty="git -C $work commit -q --allow-empty -m empty"
  hf_rounds push-change "$PUSH_RUNS" "$change" \
    "berth: git push" "git -C $work push -q berth main" \
    "baseline: docker CLI" "bash $BENCH_DIR/baseline.sh"
  hf_rounds push-empty "$PUSH_RUNS" "$empty" \
    "berth: git push (empty commit)" "git -C $work push -q berth main" \
    "baseline: docker CLI (empty commit)" "bash $BENCH_DIR/baseline.sh"
  # The app berth deployed answers.
  local port
  port=$("$BIN/berth" ps:report "$WEB_APP" --ps-web-url | sed 's/.*://')
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health" || echo " !     berth's app does not answer" >&2
  unset BERTH_ROOT
  local b f ratio diff
  b=$(mean push-change 0); f=$(mean push-change 1); ratio=$(calc '%.3f' "$b / $f")
  row "a1" "push-to-serving, templates/web with a changed file" "$(human "$b" "$(stddev push-change 0)")" \
    "$(human "$f" "$(stddev push-change 1)")" "${ratio}×" "≤ 1.05×" "$(verdict "$ratio <= 1.05")"
  b=$(mean push-empty 0); f=$(mean push-empty 1); diff=$(calc '%+.3f' "$b - $f")
  row "a2" "push of an empty commit" "$(human "$b" "$(stddev push-empty 0)")" \
    "$(human "$f" "$(stddev push-empty 1)")" "${diff} s ($(calc '%.2f' "$b / $f")×)" "≤ +1.5 s" \
    "$(verdict "$b - $f <= 1.5")"
}

# --- b. validation cost -----------------------------------------------------------------------
bench_validate() {
  say "b. reading + checking app.toml vs git cat-file"
  local name sha ratio worst=0 bmin=1e9 bmax=0 gmin=1e9 gmax=0 b g bi gi
  local imin=1e18 imax=0 jmin=1e18 jmax=0 wide_b wide_g wide_ratio wide_bi wide_gi
  {
    echo "#### b. reading + checking app.toml, by repository"
    echo
    echo "Time is hyperfine's median; instructions are counted by callgrind for the whole process"
    echo '(`valgrind --tool=callgrind`), which does not depend on the load of the machine.'
    echo
    echo "| repository | read_manifest (berth) | git cat-file -p | ratio | instructions, berth | instructions, git |"
    echo "|---|---|---|---|---|---|"
  } >>"$NOTES"
  for name in files-10 files-10000 files-100000 history-10000 files-100000-wide; do
    sha=$(sha_of "$name")
    hf "validate-$name" -N --warmup 20 --min-runs 200 \
      -n "berth $name" "$READ_MANIFEST $REPOS/$name.git $sha" \
      -n "git $name" "git --git-dir=$REPOS/$name.git cat-file -p $sha:app.toml"
    bi=$(instructions "$READ_MANIFEST" "$REPOS/$name.git" "$sha")
    gi=$(instructions git --git-dir="$REPOS/$name.git" cat-file -p "$sha:app.toml")
    b=$(mean "validate-$name" 0); g=$(mean "validate-$name" 1); ratio=$(calc '%.3f' "$b / $g")
    echo "| $name ($(grep "^$name " "$RES/repos.txt" | cut -d' ' -f3-)) | $(human "$b" "$(stddev "validate-$name" 0)") | $(human "$g" "$(stddev "validate-$name" 1)") | ${ratio}× | $bi | $gi |" >>"$NOTES"
    if [ "$name" = files-100000-wide ]; then
      wide_b=$b; wide_g=$g; wide_ratio=$ratio; wide_bi=$bi; wide_gi=$gi
      continue
    fi
    worst=$(awk -v a="$worst" -v r="$ratio" 'BEGIN { print (r > a ? r : a) }')
    bmin=$(awk -v a="$bmin" -v r="$b" 'BEGIN { print (r < a ? r : a) }')
    bmax=$(awk -v a="$bmax" -v r="$b" 'BEGIN { print (r > a ? r : a) }')
    gmin=$(awk -v a="$gmin" -v r="$g" 'BEGIN { print (r < a ? r : a) }')
    gmax=$(awk -v a="$gmax" -v r="$g" 'BEGIN { print (r > a ? r : a) }')
    imin=$(awk -v a="$imin" -v r="$bi" 'BEGIN { print (r < a ? r : a) }')
    imax=$(awk -v a="$imax" -v r="$bi" 'BEGIN { print (r > a ? r : a) }')
    jmin=$(awk -v a="$jmin" -v r="$gi" 'BEGIN { print (r < a ? r : a) }')
    jmax=$(awk -v a="$jmax" -v r="$gi" 'BEGIN { print (r > a ? r : a) }')
  done
  echo >>"$NOTES"
  row "b1" "read + check app.toml (process), worst of 10 / 10 000 / 100 000 files and 10 000 commits" \
    "$(ms "$bmin")–$(ms "$bmax") ms" "$(ms "$gmin")–$(ms "$gmax") ms" "${worst}× (worst)" "≤ 2×" \
    "$(verdict "$worst <= 2")"
  row "b2" "flat across those sizes: instructions, most / fewest (time: $(calc '%.2f' "$bmax / $bmin")× berth, $(calc '%.2f' "$gmax / $gmin")× git)" \
    "$(calc '%.2f' "$imax / $imin")× ($imin–$imax)" "$(calc '%.2f' "$jmax / $jmin")× ($jmin–$jmax)" "" \
    "≤ 1.25× (flat)" "$(verdict "$imax / $imin <= 1.25")"
  row "b3" "information: 100 000 files with 1000 entries at the root (instructions vs the fewest above)" \
    "$(human "$wide_b" "$(stddev validate-files-100000-wide 0)"), $(calc '%.2f' "$wide_bi / $imin")×" \
    "$(human "$wide_g" "$(stddev validate-files-100000-wide 1)"), $(calc '%.2f' "$wide_gi / $jmin")×" \
    "${wide_ratio}×" "≤ 2×" "$(verdict "$wide_ratio <= 2")"
}

# --- c. build context -------------------------------------------------------------------------
bench_context() {
  say "c. build context: write_tree_tar vs git archive"
  local name sha b g ratio
  {
    echo "#### c. build context, by repository"
    echo
    echo "| repository | tar_stream (berth) | git archive | ratio | peak RSS berth | peak RSS git archive | git archive, small pack windows |"
    echo "|---|---|---|---|---|---|---|"
  } >>"$NOTES"
  for name in files-10000 files-100000 ctx-200mb; do
    sha=$(sha_of "$name")
    hf "tar-$name" -N --warmup 2 --min-runs 10 \
      -n "berth $name" "$TAR_STREAM $REPOS/$name.git $sha" \
      -n "git $name" "git --git-dir=$REPOS/$name.git archive $sha"
    # Peak RSS; tar_stream also samples its anonymous and file-backed parts (BERTH_BENCH_RSS).
    record env BERTH_BENCH_RSS="$RES/split-$name" /usr/bin/time -f %M "$TAR_STREAM" "$REPOS/$name.git" "$sha" /dev/null
    BERTH_BENCH_RSS=$RES/split-$name /usr/bin/time -o "$RES/rss-berth-$name" -f %M \
      "$TAR_STREAM" "$REPOS/$name.git" "$sha" /dev/null
    record /usr/bin/time -f %M git --git-dir="$REPOS/$name.git" archive -o /dev/null "$sha"
    /usr/bin/time -o "$RES/rss-git-$name" -f %M git --git-dir="$REPOS/$name.git" archive -o /dev/null "$sha"
    record /usr/bin/time -f %M git --git-dir="$REPOS/$name.git" -c core.packedGitWindowSize=1m \
      -c core.packedGitLimit=16m archive -o /dev/null "$sha"
    /usr/bin/time -o "$RES/rss-gitsmall-$name" -f %M git --git-dir="$REPOS/$name.git" \
      -c core.packedGitWindowSize=1m -c core.packedGitLimit=16m archive -o /dev/null "$sha"
    b=$(mean "tar-$name" 0); g=$(mean "tar-$name" 1); ratio=$(calc '%.3f' "$b / $g")
    read -r _ anon file <"$RES/split-$name"
    echo "| $name ($(grep "^$name " "$RES/repos.txt" | cut -d' ' -f3-)) | $(human "$b" "$(stddev "tar-$name" 0)") | $(human "$g" "$(stddev "tar-$name" 1)") | ${ratio}× | $(calc '%.1f' "$(cat "$RES/rss-berth-$name") / 1024") MB ($(calc '%.1f' "$anon / 1024") anon + $(calc '%.1f' "$file / 1024") file) | $(calc '%.1f' "$(cat "$RES/rss-git-$name") / 1024") MB | $(calc '%.1f' "$(cat "$RES/rss-gitsmall-$name") / 1024") MB |" >>"$NOTES"
  done
  {
    echo
    echo "Peak RSS is \`/usr/bin/time -f %M\` (VmHWM). tar_stream's split (sampled every ms from"
    echo "/proc/self/status): *anon* is memory berth allocates, *file* is pack files libgit2 maps with"
    echo "mmap (page cache, shared, dropped under pressure). The last column is git archive with"
    echo "\`-c core.packedGitWindowSize=1m -c core.packedGitLimit=16m\`, which bounds git's own mapping."
    echo
  } >>"$NOTES"
  b=$(mean tar-ctx-200mb 0); g=$(mean tar-ctx-200mb 1); ratio=$(calc '%.3f' "$b / $g")
  row "c1" "build context of 10 200 files / 200 MB: write_tree_tar vs git archive" \
    "$(human "$b" "$(stddev tar-ctx-200mb 0)")" "$(human "$g" "$(stddev tar-ctx-200mb 1)")" "${ratio}×" \
    "≤ 1.1×" "$(verdict "$ratio <= 1.1")"
  local worst=0 worst_anon=0 rss anon
  for name in files-10000 files-100000 ctx-200mb; do
    rss=$(cat "$RES/rss-berth-$name")
    worst=$(( rss > worst ? rss : worst ))
    read -r _ anon _ <"$RES/split-$name"
    worst_anon=$(( anon > worst_anon ? anon : worst_anon ))
  done
  row "c2" "peak RSS of streaming the context (VmHWM), largest of the three repositories" \
    "$(calc '%.1f' "$worst / 1024") MB" "$(calc '%.1f' "$(cat "$RES/rss-git-ctx-200mb") / 1024") MB (git archive, 200 MB repo)" "" \
    "≤ 50 MB" "$(verdict "$worst / 1024 <= 50")"
  row "c3" "the same, anonymous memory only (without libgit2's mmap of the pack)" \
    "$(calc '%.1f' "$worst_anon / 1024") MB" "" "" "≤ 50 MB" "$(verdict "$worst_anon / 1024 <= 50")"
}

# --- d. storage reports -----------------------------------------------------------------------
bench_storage() {
  say "d. storage:report over 1000 apps x 5 mounts, storage:list"
  local root=$BENCH_DIR/state-root host=$BENCH_DIR/host i
  mkdir -p "$root" "$host/a" "$host/b" "$host/c"
  export BERTH_ROOT=$root
  {
    "$BIN/berth" apps:create app-0001
    "$BIN/berth" storage:create shared-1
    "$BIN/berth" storage:create shared-2
    "$BIN/berth" storage:mount app-0001 "$host/a:/mnt/a"
    "$BIN/berth" storage:mount app-0001 "$host/b:/mnt/b:ro"
    "$BIN/berth" storage:mount app-0001 "$host/c:/mnt/c"
    "$BIN/berth" storage:mount app-0001 shared-1 --container-dir /mnt/shared-1
    "$BIN/berth" storage:mount app-0001 shared-2 --container-dir /mnt/shared-2 --phase build,deploy,run
  } >/dev/null
  # The other 999 apps: the same state file, copied.
  for i in $(seq -w 2 1000); do
    mkdir "$root/apps/app-$i"
    cp "$root/apps/app-0001/state.toml" "$root/apps/app-$i/state.toml"
  done
  [ "$("$BIN/berth" storage:report | grep -c 'Storage attachment 5 container path')" = 1000 ] \
    || { echo " !     storage:report does not show 1000 apps with 5 mounts" >&2; exit 1; }
  hf storage -N --warmup 3 --min-runs 20 \
    -n "berth storage:report (1000 apps)" "$BIN/berth storage:report" \
    -n "berth storage:list app-0500" "$BIN/berth storage:list app-0500" \
    -n "berth --version (process floor)" "$BIN/berth --version"
  unset BERTH_ROOT
  local r l v
  r=$(mean storage 0); l=$(mean storage 1); v=$(mean storage 2)
  row "d1" "\`storage:report\`, 1000 apps × 5 mounts" "$(human "$r" "$(stddev storage 0)")" \
    "$(human "$v" "$(stddev storage 2)") (\`berth --version\`)" "" "≤ 200 ms" "$(verdict "$r <= 0.2")"
  row "d2" "\`storage:list <app>\`" "$(human "$l" "$(stddev storage 1)")" \
    "$(human "$v" "$(stddev storage 2)") (\`berth --version\`)" "" "≤ 5 ms" "$(verdict "$l <= 0.005")"
}

# --- criterion: the in-process numbers --------------------------------------------------------
bench_criterion() {
  say "criterion: in-process validate and tree_tar"
  record env BERTH_BENCH_REPOS="$REPOS" cargo bench --bench git_read
  BERTH_BENCH_REPOS=$REPOS cargo bench --quiet --bench git_read >&2
  {
    echo "#### In-process (criterion, \`cargo bench --bench git_read\`): mean per iteration"
    echo
    echo "Each benchmark runs for a few seconds after the previous one, so a change of load on the"
    echo "machine between them shows as a difference here; b's instruction counts do not."
    echo
    echo "| benchmark | mean | 95% interval |"
    echo "|---|---|---|"
    local file id
    for file in "$TARGET"/criterion/{validate,tree_tar}/*/new/estimates.json; do
      [ -f "$file" ] || continue
      id=${file#"$TARGET"/criterion/}
      id=${id%/new/estimates.json}
      jq -r --arg id "$id" '"| \($id) | \(.mean.point_estimate / 1000 | . * 10 | round / 10) µs | \(.mean.confidence_interval.lower_bound / 1000 | . * 10 | round / 10)–\(.mean.confidence_interval.upper_bound / 1000 | . * 10 | round / 10) µs |"' "$file"
    done
    echo
  } >>"$NOTES"
}

STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if wants a; then bench_push; fi
if wants b; then bench_validate; fi
if wants c; then bench_context; fi
if wants d; then bench_storage; fi
if wants crit; then bench_criterion; fi
ELAPSED=$(( $(date +%s) - STARTED ))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- BENCHMARKS.md ----------------------------------------------------------------------------
say "Writing $OUT_MD"
{
  echo "<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->"
  echo "## Results"
  echo
  echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC') at commit \`$(git -C "$SRC" rev-parse --short HEAD)\`$(git -C "$SRC" diff --quiet HEAD -- src hooks Cargo.toml 2>/dev/null || echo ' (with uncommitted changes)'), in ${ELAPSED} s (parts: ${ONLY# })."
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), \`nproc\` = $(nproc)," \
    "$(free -h | awk '/^Mem:/ { print $2 " RAM (" $7 " available)" }'), $(uname -sr)," \
    "Docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), $(git --version), $(hyperfine --version)."
  echo
  echo "Load average (1, 5, 15 min) when the measurements started: $LOAD_BEFORE; when they ended:"
  echo "$LOAD_AFTER. Times are hyperfine medians ± standard deviation; ratios are of medians."
  echo
  echo '```'
  free -h
  echo '```'
  echo
  echo "| # | what | berth | floor | ratio / difference | target | result |"
  echo "|---|---|---|---|---|---|---|"
  sort -t'|' -k2,2 "$ROWS"
  echo
  if [ -s "$RES/repos.txt" ]; then
    echo "Synthetic repositories (\`git fast-import\`, packed; name, commit, files, commits, size):"
    echo
    echo '```'
    cat "$RES/repos.txt"
    echo '```'
    echo
  fi
  cat "$NOTES"
  echo "#### Commands"
  echo
  echo "Binaries: \`$BIN/berth\` (\`cargo build --release\`), \`read_manifest\` = \`${READ_MANIFEST#"$SRC"/}\`," \
    "\`tar_stream\` = \`${TAR_STREAM#"$SRC"/}\` (\`cargo bench --no-run\`)."
  echo
  if wants a; then
    echo "The push baseline, \`\$BENCH_DIR/baseline.sh\`:"
    echo
    echo '```bash'
    sed "s|$BENCH_DIR|\$BENCH_DIR|g" "$BENCH_DIR/baseline.sh"
    echo '```'
  fi
  echo
  cat "$CMDS"
  echo "<!-- bench:end -->"
} >"$RES/section.md"

if [ -f "$OUT_MD" ] && grep -q '^<!-- bench:begin' "$OUT_MD" && grep -q '^<!-- bench:end' "$OUT_MD"; then
  awk -v section="$RES/section.md" '
    /^<!-- bench:begin/ { while ((getline line < section) > 0) print line; skipping = 1; next }
    /^<!-- bench:end/ { skipping = 0; next }
    !skipping { print }' "$OUT_MD" >"$RES/out.md"
  cp "$RES/out.md" "$OUT_MD"
else
  { printf '# Benchmarks\n\nRun them with `bash scripts/bench.sh`.\n\n'; cat "$RES/section.md"; } >"$OUT_MD"
fi
sort -t'|' -k2,2 "$ROWS" >&2
say "Done in ${ELAPSED} s"
