#!/usr/bin/env bash
# gocache's adversarial experiments, for anyone to rerun: prints a table of
# trials and failures (examples/chaos.rs has the details).
#
#   kills      SIGKILL of trim, the hook and `gocache prog` at random
#              moments; after each, go must build and `gocache scan` must
#              match a walk of the cache
#   beside     go build/test/vet/run loops (half through `gocache go`)
#              beside trims to a quarter of their working set: no go
#              command (nor trim) may fail
#   fuzz       malformed GOCACHEPROG streams: no panic, signal or hang
#   boundary   Go's one-hour mtime rule: a build whose entries are just
#              under an hour old, held at its link step while `trim
#              --grace 0s --budget 1MiB` (or the hook) runs: it must link
#   links      symlinks where gocache's own files go (the index, its -wal,
#              gocache/ itself, --index naming a link): stats, trim, the
#              hook and prog must write nothing outside the cache
#   full-disk-prog  `GOCACHEPROG="gocache prog" go build -a ./...` on a
#              tmpfs filled to 0 bytes free, entries 3 days old, a 50 MiB
#              budget: the build must pass and entries must be evicted
#
# Usage: scripts/chaos.sh [WORKDIR] [KILLS] [GO_COMMANDS] [FUZZ_REQUESTS] [SEED]
#   WORKDIR        where caches go (default /tmp/gocache-chaos; ~1 GB free)
#   KILLS          SIGKILL trials, a third each for trim, hook, prog (120)
#   GO_COMMANDS    go commands beside the trims (200)
#   FUZZ_REQUESTS  malformed requests, one per `gocache prog` (3000)
#   SEED           for the random delays and mutations (12)
# Environment:
#   CHAOS_ONLY     a comma-separated list of the experiments above to run
#                  (default: all); with only full-disk-prog and GOCACHE_BIN
#                  set, builds nothing (a debug build will do)
#   CHAOS_BOUNDARY_TRIALS, CHAOS_LINK_TRIALS  trials of those (20 each)
#   FULL_DISK_TRIALS  full-disk prog trials (20; 0 skips them; they need
#                  root or user namespaces, to mount a tmpfs)
# Exits 1 when any experiment had a failure. About 27 minutes on 2 busy
# cores (load 6-16).
set -euo pipefail
cd "$(dirname "$0")/.."

W=${1:-/tmp/gocache-chaos}
shift $(( $# > 0 ? 1 : 0 )) || true
mkdir -p "$W"
W=$(readlink -f "$W")

# Whether experiment $1 runs (CHAOS_ONLY unset or naming it).
wanted() { [ -z "${CHAOS_ONLY:-}" ] || case ",$CHAOS_ONLY," in *",$1,"*) true ;; *) false ;; esac; }

if [ "${CHAOS_ONLY:-}" = full-disk-prog ] && [ -n "${GOCACHE_BIN:-}" ]; then
  :
else
  cargo build --release --quiet --bin gocache --example chaos
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  export GOCACHE_BIN=$TARGET/release/gocache
fi
# The go that built the template cache (Go keys some entries by GOROOT).
GO=${GOCACHE_TEST_GO:-$(command -v go || true)}
[ -n "$GO" ] || GO=$(ls "$PWD"/target/tmp/go-*/go/bin/go 2>/dev/null | head -1)
[ -x "$GO" ] || { echo "no go: run 'cargo test' once (it installs one into target/tmp)"; exit 1; }
export GO_BIN=$GO
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOENV=off GOTELEMETRY=off CGO_ENABLED=0

# A real cache to copy for each trial: the tests' template if it is there,
# else one built here (go build std, a test, a go run: about a minute).
TEMPLATE=$(ls -d "$PWD"/target/tmp/template-cache-go*/cache 2>/dev/null | head -1 || true)
if [ -z "$TEMPLATE" ]; then
  TEMPLATE=$W/template
  if [ ! -f "$W/template.done" ]; then
    rm -rf "$TEMPLATE" "$W/tpl"
    mkdir -p "$W/tpl/hello" "$W/tpl/home"
    printf 'module hello\n\ngo 1.24\n' > "$W/tpl/hello/go.mod"
    printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n' > "$W/tpl/hello/main.go"
    ( export GOCACHE=$TEMPLATE HOME=$W/tpl/home GOPATH=$W/tpl/gopath
      "$GO" build std && cd "$W/tpl/hello" && "$GO" run . >/dev/null )
    touch "$W/template.done"
  fi
fi
echo "gocache: $GOCACHE_BIN"
echo "go: $GO ($("$GO" version))"
echo "template cache: $TEMPLATE ($(du -sh "$TEMPLATE" | cut -f1))"
echo "load: $(uptime)"

# --- Full-disk prog ----------------------------------------------------
# Each trial, in its own mount namespace: a tmpfs as large as the template
# cache and 24 MiB more, the cache copied in and indexed, every entry 3
# days old, the rest of the filesystem filled to 0 bytes free; then
# `GOCACHEPROG="gocache prog" go build -a ./...` of a module with no
# imports (the runtime and its dependencies, and go's module index, are
# put), GOCACHE_BUDGET=50MiB. A failure: the disk was not full, go failed,
# nothing was evicted, or temporary files were left.
full_disk_prog() {
  local trials=$1 fails=0 i dir rc
  local mod=$W/fulldisk/mod
  mkdir -p "$mod" "$W/fulldisk/mnt"
  printf 'module fulldisk\n\ngo 1.24\n' > "$mod/go.mod"
  printf 'package main\n\nfunc main() {}\n' > "$mod/main.go"
  local size
  size=$(du -s -B1 "$TEMPLATE" | cut -f1)
  local trial='
    set -u
    mount -t tmpfs -o size=$((SIZE / 1048576 + 24))m tmpfs "$MNT" || exit 77
    C="$MNT/cache"
    cp -a "$TEMPLATE" "$C"
    find "$C" -exec touch -h -d "3 days ago" {} +
    "$G" --cache-dir "$C" scan -q
    dd if=/dev/zero of="$MNT/filler" bs=64K 2>/dev/null
    echo x > "$MNT/probe" 2>/dev/null && echo "not full" > "$R/full" || : > "$R/full"
    find "$C" -name "*-[ad]" | wc -l > "$R/before"
    cd "$MOD"
    GOCACHE="$C" GOCACHE_BUDGET=50MiB GOCACHEPROG="$G prog" "$GO_BIN" build -a ./... > "$R/go.out" 2>&1
    echo $? > "$R/go.rc"
    find "$C" -name "*-[ad]" | wc -l > "$R/after"
    find "$C" -name ".gocache-tmp-*" | wc -l > "$R/temps"
  '
  for i in $(seq 1 "$trials"); do
    dir=$W/fulldisk/trial-$i
    rm -rf "$dir"; mkdir -p "$dir"
    rc=0
    SIZE=$size MNT=$W/fulldisk/mnt R=$dir MOD=$mod TEMPLATE=$TEMPLATE G=$GOCACHE_BIN \
      HOME=$W/fulldisk GOPATH=$W/fulldisk/gopath \
      unshare --user --map-root-user --mount sh -c "$trial" || rc=$?
    if [ "$rc" = 77 ]; then
      echo "full-disk prog: SKIPPED: cannot mount a tmpfs here"; return 0
    fi
    local why=""
    [ -s "$dir/full" ] && why="disk not full"
    [ "$(cat "$dir/go.rc" 2>/dev/null)" = 0 ] || why="$why go failed: $(tail -2 "$dir/go.out" 2>/dev/null | tr '\n' ' ')"
    [ "$(cat "$dir/after" 2>/dev/null || echo 0)" -lt "$(cat "$dir/before" 2>/dev/null || echo 0)" ] || why="$why nothing evicted"
    [ "$(cat "$dir/temps" 2>/dev/null)" = 0 ] || why="$why temporary files left"
    if [ -n "$why" ]; then
      fails=$((fails + 1)); echo "full-disk prog trial $i: FAILED:$why"
    else
      echo "full-disk prog trial $i: ok ($(cat "$dir/before") -> $(cat "$dir/after") entries, warnings: $(grep -c 'gocache prog: warning' "$dir/go.out"))"
    fi
  done
  printf '%-40s %8s %8s\n' experiment trials failures
  printf '%-40s %8s %8s\n' "full-disk prog (go build -a)" "$trials" "$fails"
  [ "$fails" = 0 ]
}

FULL_DISK_FAILED=0
if [ "${FULL_DISK_TRIALS:-20}" -gt 0 ] && wanted full-disk-prog; then
  full_disk_prog "${FULL_DISK_TRIALS:-20}" || FULL_DISK_FAILED=1
fi
[ "${CHAOS_ONLY:-}" = full-disk-prog ] && exit "$FULL_DISK_FAILED"
# The example runs the others (CHAOS_ONLY passes through; it ignores
# full-disk-prog).
"${TARGET:-$PWD/target}/release/examples/chaos" "$W/run" "$TEMPLATE" "$@" || exit 1
exit "$FULL_DISK_FAILED"
