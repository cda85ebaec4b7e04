#!/usr/bin/env bash
# The adversarial experiments of issue 12, for anyone to rerun: prints a
# table of trials and failures (examples/chaos.rs has the details).
#
#   SIGKILL of trim, the hook and `gocache prog` at random moments; after
#   each, go must build and `gocache scan` must match a walk of the cache
#   go build/test/vet/run loops (half through `gocache go`) beside trims
#   to a quarter of their working set: no go command (nor trim) may fail
#   malformed GOCACHEPROG streams: no panic, signal or hang
#
# Usage: scripts/chaos.sh [WORKDIR] [KILLS] [GO_COMMANDS] [FUZZ_REQUESTS] [SEED]
#   WORKDIR        where caches go (default /tmp/gocache-chaos; ~1 GB free)
#   KILLS          SIGKILL trials, a third each for trim, hook, prog (120)
#   GO_COMMANDS    go commands beside the trims (200)
#   FUZZ_REQUESTS  malformed requests, one per `gocache prog` (3000)
#   SEED           for the random delays and mutations (12)
# Exits 1 when any experiment had a failure. About 27 minutes on 2 busy
# cores (load 6-16).
set -euo pipefail
cd "$(dirname "$0")/.."

W=${1:-/tmp/gocache-chaos}
shift $(( $# > 0 ? 1 : 0 )) || true
mkdir -p "$W"
W=$(readlink -f "$W")

cargo build --release --quiet --bin gocache --example chaos
export GOCACHE_BIN=$PWD/target/release/gocache
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
exec "$PWD/target/release/examples/chaos" "$W/run" "$TEMPLATE" "$@"
