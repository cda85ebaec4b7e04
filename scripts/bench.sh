#!/usr/bin/env bash
# Side-by-side measurements for gocache's performance targets, each as a
# ratio against a baseline run in the same script on the same data:
#
#   scan    full scan into a fresh index, and a no-change rescan, vs du -s
#   trim    sync + plan + delete, vs Go's own trim removing the same entries;
#           deletion rate vs xargs rm on the same files
#   hook    the hook with one changed subdirectory, vs a cached go run
#   wrap    a cached `gocache go run` vs a cached `go run`
#   prog    cold and warm `go build std`: Go's cache, gocache prog and a plain Go
#           GOCACHEPROG server (go-cacher), interleaved; warm also at -p=2,
#           -p=16 and under taskset (COLD, WARM: rounds; SETTLE: seconds between
#           two builds, 0.1; PEER: a go-cacher binary;
#           VARIANTS: more gocache columns with other flags, see below;
#           KEEP=1 leaves the caches in WORKDIR); the warm rounds also run
#           the protocol's floor, a server answering from memory
#           (examples/prog_floor.rs; FLOOR: its binary, FLOOR=off: none)
#   remote  gocache prog --remote against a Garage cluster (three nodes; REMOTE_STORE_NODES=1: one) on
#           127.0.0.1 (the tests' Garage: $GOCACHE_TEST_GARAGE, else
#           target/garage-2.5.0/bin/garage), `go build std` plus a generated
#           module: (a) upload side, cold with an empty prefix: plain go vs
#           uploading compressed vs as before compression (target <= 1.03x
#           the latter), and the bucket's bytes each way (target <= 0.40x);
#           (b) download side, an empty level one and a full bucket behind
#           a shaped link (examples/shaped_proxy.rs; REMOTE_LINKS, default
#           "20:100 50:1000", RTT ms:Mbit/s): plain go, from the compressed
#           bucket, from the uncompressed one, and a raw 8-way download of
#           the uncompressed objects (examples/raw_fetch.rs), and from the
#           compressed bucket without the manifest's prefetch
#           (--remote-prefetch 0: go's gets alone); (c) what
#           uploads add: how long close waited for them (bounded by
#           --remote-drain) and how long prog ran after go had its answer;
#           (d) warm with --remote vs without (target <= 1.02x; with
#           BASE_BIN also that build's --remote; REMOTE_STORE_IDLE=1: the
#           store at idle priority, its CPU off go's path;
#           REMOTE_STORE_NODES=1: a one-node store, a third of its CPU)
#           (REMOTE_COLD, REMOTE_FETCH, REMOTE_WARM: rounds; PROXY,
#           RAW_FETCH: the two examples' binaries, else built)
#   vs      this gocache against another build of it (BASE_BIN), round by
#           round on the same data: scan fresh and unchanged, trim -n, the
#           hook, a warm `go build std` through prog (VS_ROUNDS, default 9);
#           medians, min-max, and the median of the per-round ratios
#   sim     the simulator against the real system at full scale
#           (scripts/validate-sim.py --scale full --repeat 3 --hook: two
#           generated workloads replayed through real go and gocache prog,
#           three times a row, and through the hook, each policy at three
#           budgets; about 30 minutes on 2 CPUs); its report in
#           WORKDIR/sim.json
#   ci      a cache restored (tar --posix, as actions/cache) with the index
#           the last `ci end` left: `ci begin` vs `du -s` (target <= 0.2x);
#           after a job touched half of it, `ci end` vs `trim` with the same
#           budget on copies (<= 1.0x); with no index, `ci begin` vs a first
#           `scan` (<= 1.0x)
#
# Usage: scripts/bench.sh [ENTRIES] [WORKDIR] [PARTS...]
#   ENTRIES  synthetic cache size (default 1000000; 100000 is quicker)
#   WORKDIR  where caches go (default /tmp/gocache-bench; needs ~3x 5 GB
#            free for 1M entries)
#   PARTS    any of scan trim hook wrap prog remote ci vs sim (default:
#            all but vs and sim)
# GOCACHE_BIN: measure this gocache binary instead of building one.
# The plan's own time at 1M entries is a criterion bench:
#   cargo bench --bench policy
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
W=${2:-/tmp/gocache-bench}
shift $(( $# > 2 ? 2 : $# )) || true
PARTS=${*:-scan trim hook wrap prog remote ci}
mkdir -p "$W"

SYNTHETIC=
[[ " $PARTS " == *" scan "* || " $PARTS " == *" trim "* || " $PARTS " == *" hook "* || " $PARTS " == *" ci "* || " $PARTS " == *" vs "* ]] && SYNTHETIC=1
# `release_bin --bin NAME` or `release_bin --example NAME` builds a release
# binary as the README installs gocache, and sets BUILT to its path: on
# glibc Linux a static build (it starts about 0.4 ms sooner, which a hook
# run after every go command feels). rustc runs only where something is
# built: with GOCACHE_BIN and FLOOR for the prog part alone, a machine with
# Go and no Rust can run it.
release_bin() {
  local dir=release
  [ "$1" = --example ] && dir=release/examples
  HOST=${HOST:-$(rustc -vV | sed -n 's/^host: //p')}
  if [[ $HOST == *-linux-gnu ]]; then
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet "$1" "$2" --target "$HOST"
    BUILT=$PWD/target/$HOST/$dir/$2
  else
    cargo build --release --quiet "$1" "$2"
    BUILT=$PWD/target/$dir/$2
  fi
}
if [ -n "$SYNTHETIC" ]; then
  cargo build --release --quiet --example synth_cache
  SYNTH=$PWD/target/release/examples/synth_cache
fi
if [ -n "${GOCACHE_BIN:-}" ]; then
  G=$GOCACHE_BIN
else
  release_bin --bin gocache
  G=$BUILT
fi
echo "gocache: $G"
# The protocol's floor (prog part): built as gocache is, unless given.
if [[ " $PARTS " == *" prog "* ]] && [ -z "${FLOOR:-}" ]; then
  if command -v cargo >/dev/null; then
    release_bin --example prog_floor
    FLOOR=$BUILT
  else
    FLOOR=off
  fi
fi
[ "${FLOOR:-off}" = off ] && FLOOR=
GO=$(command -v go || true)
[ -n "$GO" ] || GO=$(ls "$PWD"/target/tmp/go-*/go/bin/go 2>/dev/null | head -1)
[ -x "$GO" ] || { echo "no go: run 'cargo test' once (it installs one into target/tmp)"; exit 1; }
export PATH="$(dirname "$GO"):$PATH"   # for `gocache go`, which runs the real go from PATH
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOENV=off GOTELEMETRY=off CGO_ENABLED=0

# Microseconds a command takes (its output discarded). Bash's own clock:
# timing with `date` would add a fork and exec (about 1 ms here) to each.
us() {
  local s=$EPOCHREALTIME e
  "$@" >/dev/null 2>&1 || true
  e=$EPOCHREALTIME
  echo $(( ${e/./} - ${s/./} ))
}
# The same, saying so on stderr when the command fails.
us_ok() {
  local s=$EPOCHREALTIME e
  "$@" >/dev/null 2>"$W/last-err.txt" || echo "   FAILED: $* ($(head -c 300 "$W/last-err.txt"))" >&2
  e=$EPOCHREALTIME
  cat "$W/last-err.txt" >> "$W/all-err.txt"   # every run's stderr (prog's summary lines), kept
  echo $(( ${e/./} - ${s/./} ))
}
# The same, keeping the command's standard output (a --json report) in $1.
us_json() {
  local out=$1 s=$EPOCHREALTIME e; shift
  "$@" >"$out" 2>/dev/null || true
  e=$EPOCHREALTIME
  echo $(( ${e/./} - ${s/./} ))
}
# Median of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
sec() { awk -v a="$1" 'BEGIN {printf "%.3f s", a / 1e6}'; }
# Lets writeback of earlier copies finish before a timed run.
settle() { sync; sleep 3; }
row() { printf '  %-46s %12s   %s\n' "$1" "$2" "$3"; }

if [ -n "$SYNTHETIC" ]; then
  SRC=$W/synth-$N
  if [ ! -f "$SRC/trim.txt" ]; then
    rm -rf "$SRC"
    "$SYNTH" "$SRC" "$N" 1 10
  fi
  SRC=$(readlink -f "$SRC")
  echo "synthetic cache: $SRC ($N entries, $(du -sh "$SRC" | cut -f1))"
fi

if [[ " $PARTS " == *" scan "* ]]; then
  echo "== scan (warm; median of runs)"
  du -s "$SRC" >/dev/null
  du_us=$(for i in 1 2 3; do us du -s "$SRC"; done | median)
  full_us=$(for i in 1 2 3; do rm -f "$W"/scan.sqlite*; us "$G" --cache-dir "$SRC" --index "$W/scan.sqlite" scan; done | median)
  re_us=$(for i in 1 2 3 4 5; do us "$G" --cache-dir "$SRC" --index "$W/scan.sqlite" scan; done | median)
  row "du -s (baseline)" "$(sec "$du_us")" "1.000x"
  row "gocache scan, fresh index" "$(sec "$full_us")" "$(ratio "$full_us" "$du_us")x du (target <= 1.0)"
  row "gocache scan, nothing changed" "$(sec "$re_us")" "$(ratio "$re_us" "$du_us")x du (target < 0.05)"
  rm -f "$W"/scan.sqlite*
fi

if [[ " $PARTS " == *" trim "* ]]; then
  echo "== trim: Go's own trim vs gocache trim, same age rule (5d + 1h), same copies"
  mkdir -p "$W/p" && printf 'module p\n\ngo 1.24\n' > "$W/p/go.mod" && printf 'package p\n\nfunc F() int { return 1 }\n' > "$W/p/p.go"
  for c in go gc gf rm; do rm -rf "${W:?}/$c"; cp -a "$SRC" "$W/$c"; done
  settle
  before=$(find "$W/go" -mindepth 2 -maxdepth 2 -name '*-[ad]' | wc -l)
  # Go trims at the end of a build when trim.txt is over a day old. The
  # same tiny build with a fresh trim.txt is subtracted.
  (cd "$W/p" && GOCACHE="$W/go" "$GO" build . >/dev/null 2>&1) || true
  date +%s > "$W/go/trim.txt"
  plain_us=$(cd "$W/p" && for i in 1 2 3; do us env GOCACHE="$W/go" "$GO" build .; done | median)
  echo 0 > "$W/go/trim.txt"
  gotrim_us=$(cd "$W/p" && us env GOCACHE="$W/go" "$GO" build .)
  gotrim_us=$(( gotrim_us - plain_us ))
  after=$(find "$W/go" -mindepth 2 -maxdepth 2 -name '*-[ad]' | wc -l)
  AGE=(--build-max-age 121h --exe-max-age 121h --grace 0)
  field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
  # The usual case: the index exists (cron ran before). Its scan is not timed.
  "$G" --cache-dir "$W/gc" --index "$W/gc.sqlite" scan -q
  settle
  out=$("$G" --cache-dir "$W/gc" --index "$W/gc.sqlite" trim --json "${AGE[@]}")
  gc_removed=$(echo "$out" | field 'd["executed"]["removed"]')
  gc_us=$(echo "$out" | field 'int(d["seconds"] * 1e6)')
  ex_us=$(echo "$out" | field 'int(d["timings"]["execute_seconds"] * 1e6)')
  # The first run: the index is built by the trim's own sync.
  settle
  out=$("$G" --cache-dir "$W/gf" --index "$W/gf.sqlite" trim --json "${AGE[@]}")
  gf_us=$(echo "$out" | field 'int(d["seconds"] * 1e6)')
  row "Go's trim: removed $((before - after)) entries" "$(sec "$gotrim_us")" "1.000x"
  row "gocache trim, index exists: removed $gc_removed" "$(sec "$gc_us")" "$(ratio "$gc_us" "$gotrim_us")x Go's trim (target < 1)"
  row "gocache trim, no index yet" "$(sec "$gf_us")" "$(ratio "$gf_us" "$gotrim_us")x Go's trim"
  echo "   (gocache also removes garbage: unreachable outputs and dangling actions)"

  echo "== deletion rate: the same victims, xargs rm vs gocache's executor"
  "$G" --cache-dir "$W/rm" --index "$W/rm.sqlite" trim --dry-run --json "${AGE[@]}" \
    | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)["plan"]["victims"]]' > "$W/victims.txt"
  nv=$(wc -l < "$W/victims.txt")
  settle
  rm_us=$(cd "$W/rm" && us sh -c "xargs rm -rf < '$W/victims.txt'")
  rm_rate=$(awk -v n="$nv" -v t="$rm_us" 'BEGIN {printf "%d", n / (t / 1e6)}')
  ex_rate=$(awk -v n="$gc_removed" -v t="$ex_us" 'BEGIN {printf "%d", n / (t / 1e6)}')
  row "xargs rm -rf: $nv entries" "$rm_rate/s" "1.000x"
  row "gocache executor (re-check, move aside, remove, index)" "$ex_rate/s" "$(ratio "$ex_rate" "$rm_rate")x the rate (target >= 0.9)"
  rm -rf "$W/go" "$W/gc" "$W/gf" "$W/rm" "$W"/gc.sqlite* "$W"/gf.sqlite* "$W"/rm.sqlite*
fi

if [[ " $PARTS " == *" hook "* || " $PARTS " == *" wrap "* ]]; then
  H=$W/hello
  mkdir -p "$H" && printf 'module hello\n\ngo 1.24\n' > "$H/go.mod"
  printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n' > "$H/main.go"
  export GOCACHE=$W/gocache-go
  (cd "$H" && "$GO" run . >/dev/null && "$G" go run . >/dev/null)
fi

if [[ " $PARTS " == *" hook "* ]]; then
  echo "== hook: 1 subdirectory changed in the $N-entry cache, vs a cached go run"
  "$G" --cache-dir "$SRC" --index "$W/hook.sqlite" scan >/dev/null
  sub=$(cd "$SRC/01" && set -- *-a && echo "$1")   # (ls | head dies of SIGPIPE under pipefail)
  : > "$W/hook-added.txt"
  : > "$W/hook-plain.txt"
  # Interleaved with the baseline, so that both medians see the same machine.
  hook_us=$(for i in $(seq 25); do
      (cd "$H" && us "$GO" run .) >> "$W/hook-plain.txt"
      f="$SRC/01/01$(printf '%058d%04d' "$$" "$i")-a"
      cp "$SRC/01/$sub" "$f" && echo "$f" >> "$W/hook-added.txt"
      us "$G" --cache-dir "$SRC" --index "$W/hook.sqlite" hook --budget 1TiB
    done | median)
  gorun_us=$(median < "$W/hook-plain.txt")
  xargs rm -f < "$W/hook-added.txt"
  row "go run, cached (baseline)" "$(sec "$gorun_us")" "1.000x"
  row "gocache hook" "$(sec "$hook_us")" "$(ratio "$hook_us" "$gorun_us")x go run (target <= 0.1)"
  rm -f "$W"/hook.sqlite*
fi

if [[ " $PARTS " == *" wrap "* ]]; then
  echo "== wrapper: cached go run, plain vs through gocache go (hook included)"
  # Interleaved, so that both medians see the same machine.
  : > "$W/wrap-plain.txt"
  wrap_us=$(cd "$H" && for i in $(seq 25); do
      us "$GO" run . >> "$W/wrap-plain.txt"
      us "$G" go run .
    done | median)
  gorun_us=$(median < "$W/wrap-plain.txt")
  row "go run, cached (baseline)" "$(sec "$gorun_us")" "1.000x"
  row "gocache go run, cached" "$(sec "$wrap_us")" "$(ratio "$wrap_us" "$gorun_us")x (target <= 1.10)"
fi

if [[ " $PARTS " == *" prog "* ]]; then
  # Three caches side by side: Go's own (native), gocache prog, and a plain
  # Go GOCACHEPROG server, bradfitz/go-tool-cache's go-cacher in its
  # local-disk mode (the peer). Built from a git directory of that
  # repository: $GO_TOOL_CACHE_GIT, else a mirror found beside the checkout.
  PEER=${PEER:-$W/go-cacher}
  if [ ! -x "$PEER" ]; then
    find_up() { local d=$PWD; while [ "$d" != / ]; do [ -e "$d/$1" ] && { echo "$d/$1"; return; }; d=$(dirname "$d"); done; }
    build_peer=$(find_up shared/peers/go-cacher/build.sh)
    git_dir=${GO_TOOL_CACHE_GIT:-$(find_up .mirror/bradfitz+go-tool-cache/repo)}
    if [ -n "$build_peer" ] && [ -n "$git_dir" ]; then
      "$build_peer" "$git_dir" "$PEER" >/dev/null
    else
      echo "   (no peer: set GO_TOOL_CACHE_GIT to a git directory of github.com/bradfitz/go-tool-cache,"
      echo "    or PEER to a go-cacher binary; shared/peers/go-cacher/build.sh builds one)"
      PEER=
    fi
  fi
  COLD=${COLD:-9}     # cold rounds (each builds std three times from nothing)
  SETTLE=${SETTLE:-0.1}  # seconds between two builds
  WARM=${WARM:-11}    # warm rounds per setting
  echo "== GOCACHEPROG: go build std; native = Go's own cache, gocache = gocache prog, peer = go-cacher (disk)"
  [ -n "$FLOOR" ] && echo "   floor (warm only) = the protocol alone: every get answered from memory, no file access (examples/prog_floor.rs)"
  echo "   command: scripts/bench.sh $N $W $PARTS (COLD=$COLD WARM=$WARM); nproc $(nproc); $(uptime | sed 's/^ *//')"
  echo "   $("$GO" version); peer: ${PEER:-none}"
  echo "   each cell: median [min-max] of its rounds; ratio = median / native's median; the sides run in turn, the order rotating"
  # VARIANTS adds gocache columns with other flags, for tuning on a given
  # machine: VARIANTS='spin:--spin-us 200;w0:--workers 0'.
  declare -A VARGS=()
  SIDES="native gocache"
  IFS=';' read -ra vs <<< "${VARIANTS:-}"
  for v in "${vs[@]}"; do
    [ -n "$v" ] || continue
    VARGS[${v%%:*}]=${v#*:}
    SIDES+=" ${v%%:*}"
  done
  SIDES+="${PEER:+ peer}"
  [ -n "${VARIANTS:-}" ] && echo "   variants: $VARIANTS"
  # One build on one side: `side NAME CMD...`.
  side() {
    local s=$1; shift
    case $s in
      native) GOCACHE=$W/std-native "$@" ;;
      gocache) GOCACHE=$W/std-gocache GOCACHEPROG="$G prog" "$@" ;;
      peer) GOCACHE=$W/std-peer-go GOCACHEPROG="$PEER $W/std-peer" "$@" ;;
      floor) GOCACHE=$W/std-floor GOCACHEPROG="$FLOOR $W/std-floor.snapshot" "$@" ;;
      *) GOCACHE=$W/std-$s GOCACHEPROG="$G prog ${VARGS[$s]}" "$@" ;;
    esac
  }
  # stats FILE: "median min max" of the numbers in FILE.
  stats() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[1], a[NR]}'; }
  fmt_ms() { awk -v m="$1" -v lo="$2" -v hi="$3" -v b="$4" 'BEGIN {
      u = (b > 5e6) ? 1e6 : 1e3; n = (b > 5e6) ? "s" : "ms"; d = (b > 5e6) ? 2 : 0
      r = (b == m) ? "" : sprintf(" %.3fx", m / b)
      printf "%.*f %s [%.*f-%.*f]%s", d, m / u, n, d, lo / u, d, hi / u, r }'; }
  # measure LABEL ROUNDS PREP CMD...: ROUNDS rounds of CMD on each side, in
  # rotating order; PREP (a function name or :) runs before each build.
  measure() {
    local label=$1 rounds=$2 prep=$3; shift 3
    local sides=($SIDES) i j s line base
    for s in "${sides[@]}"; do : > "$W/t-$s.txt"; done
    for i in $(seq "$rounds"); do
      for j in "${!sides[@]}"; do
        s=${sides[$(( (i + j) % ${#sides[@]} ))]}
        "$prep" "$s"
        side "$s" us_ok "$@" >> "$W/t-$s.txt"
        # A GOCACHEPROG server may still run after go has its answer
        # (gocache prog records the last uses and closes its index then):
        # let it end before the next side's build, so that no side is
        # charged with another's tail.
        sleep "$SETTLE"
      done
    done
    read -r base _ _ < <(stats "$W/t-native.txt")
    line=$(printf '  %-24s' "$label")
    for s in "${sides[@]}"; do
      line+=$(printf ' %-30s' "$(fmt_ms $(stats "$W/t-$s.txt") "$base")")
    done
    echo "$line"
  }
  fresh() {
    case $1 in
      peer) rm -rf "$W/std-peer-go" "$W/std-peer" ;;
      *) rm -rf "${W:?}/std-$1" ;;
    esac
  }
  printf '  %-24s' ""; for s in $SIDES ${FLOOR:+floor}; do printf ' %-30s' "$s"; done; echo
  rm -rf "$W"/std-*
  if [ "$COLD" -gt 0 ]; then
    measure "cold ($COLD rounds)" "$COLD" fresh "$GO" build std
  else
    # No cold rounds: fill each cache once. The variants are gocache prog
    # with other flags on the same layout and index, so they start from a
    # copy of gocache's (a cold build each would cost more than all the
    # warm rounds on a many-core machine).
    for s in $SIDES; do
      if [ -n "${VARGS[$s]+x}" ] && [ -d "$W/std-gocache" ]; then
        cp -a "$W/std-gocache" "$W/std-$s"
      else
        side "$s" "$GO" build std >/dev/null 2>&1
      fi
    done
  fi
  # The floor (last, so that the cold rows keep their columns) stores
  # nothing: it starts from a copy of gocache's cache, and its first build
  # learns the answers it then serves from memory.
  if [ -n "$FLOOR" ]; then
    cp -a "$W/std-gocache" "$W/std-floor"
    SIDES+=" floor"
  fi
  # Warm builds take a quarter of a second; the first after a cold one is
  # not counted (it reads what the cold one wrote back).
  for s in $SIDES; do side "$s" "$GO" build std >/dev/null 2>&1; done
  measure "warm ($WARM rounds)" "$WARM" : "$GO" build std
  measure "warm, -p=2" "$WARM" : "$GO" build -p=2 std
  measure "warm, -p=16" "$WARM" : "$GO" build -p=16 std
  measure "warm, taskset -c 0" "$WARM" : taskset -c 0 "$GO" build std
  measure "warm, taskset -c 0,1" "$WARM" : taskset -c 0,1 "$GO" build std
  echo "   targets: warm <= 1.05x native and <= peer on 16 cores; <= 1.20x and <= peer on 2;"
  echo "   cold <= 1.03x; -p=2 <= 1.15x on 16 cores"
  [ -n "${KEEP:-}" ] || rm -rf "$W"/std-*   # KEEP=1: leave the caches, for more runs by hand
fi

if [[ " $PARTS " == *" remote "* ]]; then
  GARAGE=${GOCACHE_TEST_GARAGE:-$PWD/target/garage-2.5.0/bin/garage}
  [ -x "$GARAGE" ] || { echo "no garage: run 'cargo test remote' once (it builds one), or set GOCACHE_TEST_GARAGE"; exit 1; }
  # A three-node cluster as the tests start it (tests/support/garage.rs):
  # replication factor 3, consistent mode, SQLite metadata.
  # REMOTE_STORE_NODES=1: one node (replication factor 1), a third of the
  # store's CPU on this machine (a store elsewhere costs it none).
  NODES=${REMOTE_STORE_NODES:-3}
  case $NODES in 1|3) ;; *) echo "REMOTE_STORE_NODES must be 1 or 3, not '$NODES'"; exit 2 ;; esac
  GW=$W/garage
  rm -rf "$GW"; mkdir -p "$GW"
  GSECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  GPIDS=()
  stop_garage() { for p in "${GPIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
  trap stop_garage EXIT
  for i in $(seq 0 $((NODES - 1))); do
    mkdir -p "$GW/n$i"
    s3=$(port); rpc=$(port)
    [ "$i" = 0 ] && S3_PORT=$s3
    cat > "$GW/n$i/garage.toml" <<EOT
metadata_dir = "$GW/n$i/meta"
data_dir = "$GW/n$i/data"
db_engine = "sqlite"
replication_factor = $NODES
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$GSECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
EOT
    RUST_LOG=warn "$GARAGE" -c "$GW/n$i/garage.toml" server > "$GW/n$i/log" 2>&1 &
    GPIDS+=($!)
  done
  gcli() { local n=$1; shift; RUST_LOG=warn "$GARAGE" -c "$GW/n$n/garage.toml" "$@"; }
  retry() { for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; "$@"; }
  ids=()
  for i in $(seq 0 $((NODES - 1))); do retry gcli "$i" node id -q; ids+=("$(gcli "$i" node id -q)"); done
  for i in $(seq 1 $((NODES - 1))); do retry gcli 0 node connect "${ids[$i]}"; done
  retry gcli 0 layout assign -z dc1 -c 1G $(for id in "${ids[@]}"; do echo "${id:0:16}"; done)
  gcli 0 layout apply --version 1 >/dev/null
  KEY_ID=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  KEY_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  retry gcli 0 key import --yes -n bench "$KEY_ID" "$KEY_SECRET"
  retry gcli 0 bucket create bench
  retry gcli 0 bucket allow --read --write --owner bench --key bench
  export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_REGION=garage AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET
  retry "$G" remote stats s3://bench/ready
  REMOTE_COLD=${REMOTE_COLD:-3}
  REMOTE_FETCH=${REMOTE_FETCH:-3}
  REMOTE_WARM=${REMOTE_WARM:-11}
  REMOTE_LINKS=${REMOTE_LINKS:-20:100 50:1000}
  # The shaped link (tests/support/shaped.rs) and the raw download, built
  # as gocache is unless given (PROXY, RAW_FETCH: their binaries).
  [ -n "${PROXY:-}" ] || { release_bin --example shaped_proxy; PROXY=$BUILT; }
  [ -n "${RAW_FETCH:-}" ] || { release_bin --example raw_fetch; RAW_FETCH=$BUILT; }
  RAW=$RAW_FETCH
  echo "== remote: gocache prog --remote on a $NODES-node Garage on 127.0.0.1 (rf $NODES); go build std plus a module"
  echo "   command: scripts/bench.sh $N $W $PARTS (REMOTE_COLD=$REMOTE_COLD REMOTE_FETCH=$REMOTE_FETCH REMOTE_WARM=$REMOTE_WARM REMOTE_LINKS='$REMOTE_LINKS' REMOTE_STORE_NODES=$NODES REMOTE_STORE_IDLE=${REMOTE_STORE_IDLE:-0}); nproc $(nproc); $(uptime | sed 's/^ *//')"
  # A module of its own beside std: ten generated packages and a main
  # that imports them and some of std (net/http, encoding/json).
  MOD=$W/r-mod
  rm -rf "$MOD"; mkdir -p "$MOD"
  printf 'module example.com/benchmod\n\ngo 1.24\n' > "$MOD/go.mod"
  imports=""; uses=""
  for p in 0 1 2 3 4 5 6 7 8 9; do
    mkdir -p "$MOD/p$p"
    {
      printf 'package p%s\n\nimport (\n\t"fmt"\n\t"sort"\n\t"strings"\n)\n\n' "$p"
      for f in $(seq 0 59); do
        printf 'type T%s struct{ A, B int; S string; M map[string]int }\n\n' "$f"
        printf 'func (t *T%s) Sum(xs []int) int {\n\tsort.Ints(xs)\n\tn := t.A\n\tfor i, x := range xs {\n\t\tif i%%%s == 0 { n += x * %s } else { n -= x }\n\t}\n\treturn n + len(t.M)\n}\n\n' "$f" $((f % 7 + 2)) "$f"
        printf 'func F%s(s string) string {\n\tparts := strings.Split(s, ",")\n\tfor i := range parts { parts[i] = fmt.Sprintf("%%s-%s-%%d", parts[i], i) }\n\treturn strings.Join(parts, ";")\n}\n\n' "$f" "$p$f"
      done
    } > "$MOD/p$p/p.go"
    imports+="\t\"example.com/benchmod/p$p\"\n"
    uses+="\tout = append(out, p$p.F$((p * 5))(\"a,b\"))\n"
  done
  printf 'package main\n\nimport (\n\t"encoding/json"\n\t"net/http"\n\t"os"\n%b)\n\nfunc main() {\n\tvar out []string\n%b\tjson.NewEncoder(os.Stdout).Encode(out)\n\t_ = http.ListenAndServe\n}\n' "$imports" "$uses" > "$MOD/main.go"
  # Dated back, so that go caches everything on the first build.
  find "$MOD" -type f -exec touch -d '1 minute ago' {} +
  # rbuild CACHE --native | rbuild CACHE PROG-ARGS...: go build std, then
  # the module, with an own GOCACHE; through gocache prog unless --native
  # (the std build's session writes its timeline to r-trace.txt).
  rbuild() {
    local cache=$1; shift
    if [ "${1:-}" = --native ]; then
      GOCACHE=$cache us_ok bash -c '"$0" build std && cd "$1" && "$0" build -o "$2" .' "$GO" "$MOD" "$W/r-bin"
    else
      GOCACHE=$cache P1="$G prog --trace $W/r-trace.txt $*" P2="$G prog $*" us_ok bash -c \
        'GOCACHEPROG=$P1 "$0" build std && cd "$1" && GOCACHEPROG=$P2 "$0" build -o "$2" .' "$GO" "$MOD" "$W/r-bin"
    fi
  }
  # The timeline's microseconds from event $2 to event $3 in trace $1.
  span() { awk -v a="$2" -v b="$3" '$2 == a && !x {x = $1} $2 == b {y = $1} END {print y - x}' "$1"; }
  fmt3() { sort -n "$1" | awk -v b="${2:-0}" -v u="${3:-1e6}" -v n="${4:-s}" '{a[NR]=$1} END {
      m = a[int((NR+1)/2)]; r = b ? sprintf("  %.3fx", m / b) : ""
      printf "%.2f %s [%.2f-%.2f]%s", m / u, n, a[1] / u, a[NR] / u, r }'; }
  med() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  # Upload side: cold builds into empty prefixes, the sides interleaved:
  # no store (plain go), uploading compressed (the default, z-N), and as
  # before compression (--remote-compression off, u-N).
  : > "$W/r-native.txt"; : > "$W/r-upz.txt"; : > "$W/r-upu.txt"
  : > "$W/r-closewait.txt"; : > "$W/r-after.txt"
  sides=(native upz upu)
  for i in $(seq "$REMOTE_COLD"); do
    for k in 0 1 2; do
      side=${sides[$(( (i + k) % 3 ))]}
      rm -rf "$W/r-l1" "$W/r-trace.txt"
      case $side in
        native) rbuild "$W/r-l1" --native >> "$W/r-native.txt" ;;
        upz) rbuild "$W/r-l1" --remote "s3://bench/z-$i" >> "$W/r-upz.txt" ;;
        upu) rbuild "$W/r-l1" --remote "s3://bench/u-$i" --remote-compression off >> "$W/r-upu.txt" ;;
      esac
      if [ "$side" != native ]; then
        # prog writes its timeline as it exits, after go.
        for _ in $(seq 300); do [ -s "$W/r-trace.txt" ] && break; sleep 0.1; done
        span "$W/r-trace.txt" end-of-requests released >> "$W/r-closewait.txt"
        span "$W/r-trace.txt" released index-closed >> "$W/r-after.txt"
      fi
    done
  done
  base=$(med "$W/r-native.txt")
  upu=$(med "$W/r-upu.txt")
  echo "   upload side: an empty level one, an empty prefix ($REMOTE_COLD rounds, interleaved; loopback)"
  row "cold, plain go (baseline)" "$(fmt3 "$W/r-native.txt")" ""
  row "cold, uploading as before (compression off)" "$(fmt3 "$W/r-upu.txt" "$base")" ""
  row "cold, uploading compressed" "$(fmt3 "$W/r-upz.txt" "$base")" "$(ratio "$(med "$W/r-upz.txt")" "$upu")x off (target <= 1.03)"
  row "(c) close waited for uploads (std)" "$(fmt3 "$W/r-closewait.txt" 0 1e3 ms)" "(deadline: --remote-drain, 5 s)"
  row "(c) prog ran on after go's answer (std)" "$(fmt3 "$W/r-after.txt" 0 1e3 ms)" "(go does not wait for it)"
  # The bucket: the same entries as before compression and compressed.
  "$G" remote stats --json s3://bench/u-1 > "$W/r-stats-u.json"
  "$G" remote stats --json s3://bench/z-1 > "$W/r-stats-z.json"
  field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
  ub=$(field "$W/r-stats-u.json" stored_bytes); zb=$(field "$W/r-stats-z.json" stored_bytes)
  row "bucket bytes, as before compression" "$(awk -v b="$ub" 'BEGIN {printf "%.1f MB", b / 1e6}')" "$(field "$W/r-stats-u.json" total | sed 's/.*objects.: \([0-9]*\).*/\1 objects/')"
  row "bucket bytes, compressed" "$(awk -v b="$zb" 'BEGIN {printf "%.1f MB", b / 1e6}')" "$(ratio "$zb" "$ub")x (target <= 0.40)"
  # Download side: an empty level one, a full bucket, through a shaped
  # link; beside it, the floor of today's format: every object of u-1
  # fetched 8 at a time, nothing verified or written.
  for link in $REMOTE_LINKS; do
    rtt=${link%%:*}; mbit=${link##*:}
    # Removed first: the last link's address must not be read for this one's.
    rm -f "$W/r-proxy.txt"
    "$PROXY" --to "127.0.0.1:$S3_PORT" --rtt-ms "$rtt" --mbit "$mbit" > "$W/r-proxy.txt" &
    PPID_=$!; GPIDS+=("$PPID_")
    for _ in $(seq 50); do [ -s "$W/r-proxy.txt" ] && break; sleep 0.1; done
    ep="http://$(head -1 "$W/r-proxy.txt")"
    : > "$W/r-fz.txt"; : > "$W/r-fu.txt"; : > "$W/r-raw.txt"; : > "$W/r-fzn.txt"
    fsides=(z u raw zn)
    for i in $(seq "$REMOTE_FETCH"); do
      for k in 0 1 2 3; do
        rm -rf "$W/r-l1"
        case ${fsides[$(( (i + k) % 4 ))]} in
          z) rbuild "$W/r-l1" --remote s3://bench/z-1 --endpoint "$ep" >> "$W/r-fz.txt" ;;
          zn) rbuild "$W/r-l1" --remote s3://bench/z-1 --endpoint "$ep" --remote-prefetch 0 >> "$W/r-fzn.txt" ;;
          u) rbuild "$W/r-l1" --remote s3://bench/u-1 --endpoint "$ep" >> "$W/r-fu.txt" ;;
          raw) "$RAW" s3://bench/u-1 --parallel 8 --endpoint "$ep" | awk '{printf "%d\n", $3 * 1e6}' >> "$W/r-raw.txt" ;;
        esac
      done
    done
    kill "$PPID_" 2>/dev/null || true
    raw=$(med "$W/r-raw.txt")
    echo "   download side over ${rtt} ms / ${mbit} Mbit/s (shaped link; $REMOTE_FETCH rounds, interleaved; ratios to the raw download)"
    row "cold, plain go" "$(fmt3 "$W/r-native.txt" "$raw")" ""
    row "raw 8-way download of u-1 (the floor)" "$(fmt3 "$W/r-raw.txt")" ""
    row "from the bucket, compressed, no prefetch" "$(fmt3 "$W/r-fzn.txt" "$raw")" "(--remote-prefetch 0)"
    row "from the bucket, as before compression" "$(fmt3 "$W/r-fu.txt" "$raw")" ""
    row "from the bucket, compressed" "$(fmt3 "$W/r-fz.txt" "$raw")" "(target < 1.0x at 100 Mbit/s)"
  done
  # Warm: each side on its own warm cache; the same store. Five rounds
  # first: a build key's manifest settles after four sessions (the entries
  # an uploading session listed and later ones do not use age out), and
  # a settled manifest is not written again. REMOTE_STORE_IDLE=1 runs the
  # store at idle priority meanwhile, so that its CPU (three nodes writing
  # each session's use log) stays off go's path, as a store on another
  # machine's would. With BASE_BIN, a third side: --remote through that
  # build (e.g. of the commit before), on the remote side's cache.
  rm -rf "$W/r-warm-local" "$W/r-warm-remote"
  for s in local remote; do
    for _ in 1 2 3 4 5; do
      if [ $s = local ]; then rbuild "$W/r-warm-$s" >/dev/null
      else rbuild "$W/r-warm-$s" --remote s3://bench/z-1 >/dev/null; fi
    done
  done
  if [ "${REMOTE_STORE_IDLE:-0}" = 1 ]; then
    # The store's nodes (the links' proxies in GPIDS are gone by now).
    for p in "${GPIDS[@]}"; do
      [ -d "/proc/$p/task" ] || continue
      for t in /proc/"$p"/task/*; do chrt --idle -p 0 "${t##*/}" >/dev/null 2>&1 || true; done
    done
  fi
  wsides=(local remote); [ -x "${BASE_BIN:-}" ] && wsides+=(base)
  for s in "${wsides[@]}"; do : > "$W/r-warm-$s.txt"; done
  for i in $(seq "$REMOTE_WARM"); do
    for k in $(seq 0 $(( ${#wsides[@]} - 1 ))); do
      s=${wsides[$(( (i + k) % ${#wsides[@]} ))]}
      case $s in
        local) rbuild "$W/r-warm-local" >> "$W/r-warm-local.txt" ;;
        remote) rbuild "$W/r-warm-remote" --remote s3://bench/z-1 >> "$W/r-warm-remote.txt" ;;
        base) G="$BASE_BIN" rbuild "$W/r-warm-remote" --remote s3://bench/z-1 >> "$W/r-warm-base.txt" ;;
      esac
    done
  done
  # The median of the round-by-round ratios to the local side, their
  # range, and a 90% bootstrap interval of that median (on a busy 2-CPU
  # machine single rounds spread by a quarter: the interval says whether
  # the rounds can tell 1.02x from 1.00x).
  pairwise() {
    python3 - "$1" "$2" <<'PY'
import random, statistics, sys
a = [float(x) for x in open(sys.argv[1]).read().split()]
b = [float(x) for x in open(sys.argv[2]).read().split()]
r = sorted(x / y for x, y in zip(a, b))
random.seed(1)
meds = sorted(statistics.median(random.choices(r, k=len(r))) for _ in range(2000))
print(f"pairwise median {statistics.median(r):.3f}x [{r[0]:.3f}-{r[-1]:.3f}], "
      f"90% interval {meds[100]:.3f}-{meds[1899]:.3f}", end="")
PY
  }
  wbase=$(med "$W/r-warm-local.txt")
  echo "   warm (loopback; $REMOTE_WARM rounds, interleaved; store: $NODES node(s) at $([ "${REMOTE_STORE_IDLE:-0}" = 1 ] && echo idle || echo normal) priority)"
  row "warm, no --remote (baseline)" "$(fmt3 "$W/r-warm-local.txt" 0 1e3 ms)" ""
  row "warm, --remote (d)" "$(fmt3 "$W/r-warm-remote.txt" "$wbase" 1e3 ms)" "$(pairwise "$W/r-warm-remote.txt" "$W/r-warm-local.txt") (target <= 1.02x)"
  if [ -s "$W/r-warm-base.txt" ]; then
    row "warm, --remote, BASE_BIN" "$(fmt3 "$W/r-warm-base.txt" "$wbase" 1e3 ms)" "$(pairwise "$W/r-warm-base.txt" "$W/r-warm-local.txt")"
  fi
  echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$G" remote stats s3://bench/z-1 | sed 's/^/   /' | head -12
  stop_garage; trap - EXIT
  rm -rf "$W"/r-l1 "$W"/r-warm-* "$GW" "$MOD"
fi

if [[ " $PARTS " == *" ci "* ]]; then
  echo "== ci: begin and end on a $N-entry cache restored with its index; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  # Every second entry, as Go's markUsed would touch what a job used.
  job() { find "$1" -mindepth 2 -maxdepth 2 -name '*-[ad]' | awk 'NR % 2 == 0' | xargs -r touch -h; }
  # The previous job: begin, use half, end; saved and restored with tar as
  # actions/cache does (--posix; --sparse for the synthetic big outputs).
  rm -rf "${W:?}/ci-prev" "$W/ci" "$W/ci.tar"
  cp -a "$SRC" "$W/ci-prev"
  "$G" -q --cache-dir "$W/ci-prev" ci begin
  job "$W/ci-prev"
  "$G" -q --cache-dir "$W/ci-prev" ci end
  (cd "$W" && tar --posix --sparse -cf ci.tar ci-prev && rm -rf ci-prev && mkdir ci && tar -xf ci.tar -C ci --strip-components=1 && rm ci.tar)
  settle
  # ci begin changes only the index and trim.txt: put them back between tries.
  cp -a "$W/ci/gocache/index.sqlite" "$W/ci-index.sqlite"
  cp -a "$W/ci/trim.txt" "$W/ci-trim.txt"
  du -s "$W/ci" >/dev/null
  : > "$W/ci-du.txt"
  begin_us=$(for i in 1 2 3; do
      us du -s "$W/ci" >> "$W/ci-du.txt"
      cp "$W/ci-index.sqlite" "$W/ci/gocache/index.sqlite"; cp "$W/ci-trim.txt" "$W/ci/trim.txt"
      rm -f "$W"/ci/gocache/index.sqlite-*
      us "$G" -q --cache-dir "$W/ci" ci begin
    done | median)
  du_us=$(median < "$W/ci-du.txt")
  row "du -s of the restored cache (baseline)" "$(sec "$du_us")" "1.000x"
  row "ci begin, index sealed by the last ci end" "$(sec "$begin_us")" "$(ratio "$begin_us" "$du_us")x du (target <= 0.2)"

  # This job: half used again; then ci end and trim with the same budget,
  # each on its own copy of the same cache and index.
  job "$W/ci"
  rm -rf "$W/ci-trim" && cp -a "$W/ci" "$W/ci-trim"
  budget=$(( $(du -s -B1 "$W/ci" | cut -f1) * 7 / 10 ))
  settle
  end_us=$(us_json "$W/ci-end.json" "$G" -q --cache-dir "$W/ci" ci end --budget "$budget" --json)
  settle
  # Ages off: ci end has none (runs replace them), so both do the budget.
  trim_us=$(us_json "$W/ci-trim.json" "$G" -q --cache-dir "$W/ci-trim" trim --budget "$budget" --build-max-age off --exe-max-age off --json)
  # Right after the job, trim cannot tell its uses from Go's 1h mtime lag
  # and stops short of the budget; ci end knows them and meets it. The
  # rows say how much each removed, so the ratio reads as what it is.
  work() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); n=(d.get("removed") or {}).get("entries", (d.get("executed") or {}).get("removed", 0)); print("%d removed, budget %s" % (n, "met" if d.get("limits_met") else "NOT met"))' "$1" 2>/dev/null || echo "?"; }
  row "gocache trim --budget 70% (baseline)" "$(sec "$trim_us")" "1.000x; $(work "$W/ci-trim.json")"
  row "ci end --budget 70%" "$(sec "$end_us")" "$(ratio "$end_us" "$trim_us")x trim (target <= 1.0); $(work "$W/ci-end.json")"
  rm -rf "$W/ci" "$W/ci-trim" "$W"/ci-index.sqlite "$W"/ci-trim.txt "$W"/ci-end.json "$W"/ci-trim.json

  # No index: a cache from an image, or the first run. Interleaved.
  rm -rf "$W/ci-new" && cp -a "$SRC" "$W/ci-new"
  settle
  : > "$W/ci-scan.txt"
  new_us=$(for i in 1 2 3; do
      rm -f "$W"/ci-new-*.sqlite*
      us "$G" -q --cache-dir "$W/ci-new" --index "$W/ci-new-scan.sqlite" scan >> "$W/ci-scan.txt"
      us "$G" -q --cache-dir "$W/ci-new" --index "$W/ci-new-begin.sqlite" ci begin
    done | median)
  scan_us=$(median < "$W/ci-scan.txt")
  row "gocache scan, fresh index (baseline)" "$(sec "$scan_us")" "1.000x"
  row "ci begin, no index" "$(sec "$new_us")" "$(ratio "$new_us" "$scan_us")x scan (target <= 1.0)"
  rm -rf "$W/ci-new" "$W"/ci-new-*.sqlite*
fi

if [[ " $PARTS " == *" sim "* ]]; then
  [ -n "$GO" ] || { echo "sim: no go on PATH"; exit 1; }
  echo "== sim: scripts/validate-sim.py --scale full --repeat 3 --hook; nproc $(nproc); $(uptime | sed 's/^ *//')"
  python3 scripts/validate-sim.py --scale full --repeat 3 --hook --gocache "$G" --go "$GO" \
    --workdir "$W/sim" --json "$W/sim.json"
fi

if [[ " $PARTS " == *" vs "* ]]; then
  # Two gocache builds side by side (a restructure must not slow anything
  # down): BASE_BIN (another build, e.g. of the commit before) against
  # this one, round by round, B then A, on the same data.
  [ -x "${BASE_BIN:-}" ] || { echo "vs: set BASE_BIN to the gocache binary to compare with"; exit 1; }
  B=$BASE_BIN
  R=${VS_ROUNDS:-9}
  echo "== vs: $G (A) against $B (B), $R rounds each, interleaved"
  printf '  %-34s %22s %22s %18s\n' "" "A median (min-max)" "B median (min-max)" "A/B median (range)"
  # vs_row NAME PREP A-CMD B-CMD: PREP (eval'd) runs untimed before each.
  vs_row() {
    local name=$1 prep=$2 a=$3 b=$4 i ta tb
    : > "$W/vs-a.txt"; : > "$W/vs-b.txt"; : > "$W/vs-r.txt"
    for i in $(seq "$R"); do
      eval "$prep"; tb=$(eval "us_ok $b")
      eval "$prep"; ta=$(eval "us_ok $a")
      echo "$ta" >> "$W/vs-a.txt"; echo "$tb" >> "$W/vs-b.txt"
      ratio "$ta" "$tb" >> "$W/vs-r.txt"; echo >> "$W/vs-r.txt"
    done
    local ma mb mr
    ma=$(median < "$W/vs-a.txt"); mb=$(median < "$W/vs-b.txt"); mr=$(grep . "$W/vs-r.txt" | median)
    printf '  %-34s %22s %22s %18s\n' "$name" \
      "$(sec "$ma") ($(sort -n "$W/vs-a.txt" | head -1 | awk '{printf "%.3f", $1/1e6}')-$(sort -n "$W/vs-a.txt" | tail -1 | awk '{printf "%.3f", $1/1e6}'))" \
      "$(sec "$mb") ($(sort -n "$W/vs-b.txt" | head -1 | awk '{printf "%.3f", $1/1e6}')-$(sort -n "$W/vs-b.txt" | tail -1 | awk '{printf "%.3f", $1/1e6}'))" \
      "${mr}x ($(grep . "$W/vs-r.txt" | sort -n | head -1)-$(grep . "$W/vs-r.txt" | sort -n | tail -1))"
  }
  IA="--cache-dir $SRC --index $W/vs-a.sqlite"; IB="--cache-dir $SRC --index $W/vs-b.sqlite"
  vs_row "scan, fresh index" 'rm -f "$W"/vs-[ab].sqlite*' '"$G" $IA scan -q' '"$B" $IB scan -q'
  vs_row "scan, nothing changed" ':' '"$G" $IA scan -q' '"$B" $IB scan -q'
  half=$(( $(du -s -B1 "$SRC" | cut -f1) / 2 ))
  vs_row "trim -n, budget half the cache" ':' '"$G" $IA trim -n -q --budget $half' '"$B" $IB trim -n -q --budget $half'
  sub=$(cd "$SRC/01" && set -- *-a && echo "$1")
  : > "$W/vs-added.txt"
  # Each hook finds one new entry in one subdirectory, as after a go command.
  vs_add() { local f; f="$SRC/01/01$(printf '%058d%06d' "$$" "$RANDOM$RANDOM" | tail -c 62)-a"; cp "$SRC/01/$sub" "$f"; echo "$f" >> "$W/vs-added.txt"; }
  vs_row "hook, 1 subdirectory changed" 'vs_add' '"$G" $IA hook --budget 1TiB' '"$B" $IB hook --budget 1TiB'
  xargs rm -f < "$W/vs-added.txt"
  rm -f "$W"/vs-[ab].sqlite*
  # GOCACHEPROG: a warm `go build std`, each build with its own warm cache.
  for x in a b; do rm -rf "$W/vs-prog-$x"; done
  (GOCACHE=$W/vs-prog-a GOCACHEPROG="$G prog" "$GO" build std && GOCACHE=$W/vs-prog-b GOCACHEPROG="$B prog" "$GO" build std) >/dev/null 2>&1
  vs_row "prog, warm go build std" ':' 'env GOCACHE=$W/vs-prog-a GOCACHEPROG="$G prog" "$GO" build std' 'env GOCACHE=$W/vs-prog-b GOCACHEPROG="$B prog" "$GO" build std'
  [ -n "${KEEP:-}" ] || rm -rf "$W"/vs-prog-[ab]
fi
