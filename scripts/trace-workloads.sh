#!/usr/bin/env bash
# Traces of three real workloads, recorded by gocache itself: each a series
# of runs of go commands on a cache of its own, served by `gocache prog`
# (GOCACHEPROG, REC=prog, the default: every get and put, with the measured
# seconds from a miss to its put as the rebuild cost) or marked by
# `ci begin`/`ci end` (REC=ci: costs estimated from kind and size),
# exported with `gocache trace export` and replayed by `gocache simulate`
# at 20/30/50% of the unbounded footprint. Offline: only the Go toolchain's
# own source (std, cmd) and modules written here.
#
#   std    a CI matrix: std packages and cmd/gofmt for three GOOS/GOARCH
#          targets in turn, go vet every other run
#   tests  a developer testing std packages, a sliding window of them
#   app    an app with a local dependency (replace ../dep): branch
#          switches, dependency bumps, go test, go run a tool, go vet
#
# Usage: scripts/trace-workloads.sh [std|tests|app|all] (RUNS=8 runs each)
# Writes WORKDIR/NAME.jsonl (the trace), NAME.txt and NAME.json (simulate);
# WORKDIR defaults to /tmp/gocache-workloads-REC. With REC=ci the go
# commands run through `ci end`'s marks: go's build hits show as mtimes ci
# end moved back, once per entry per run (see README, traces). With
# REC=prog every lookup is in the trace, and `go run` caches no executable
# (GOCACHEPROG never does). The runs follow each other without waiting,
# but gocache's clock moves 2.5 h on for each (GOCACHE_TEST_NOW_OFFSET;
# prog's trace carries that clock), as for runs hours apart: the batch
# policies (lru, gdsf, gd-cost, gds) protect what was used within the
# last 2 h, as the real trim does, so the window covers the run at hand
# only; a trace of runs minutes apart would have them evict nothing. (Under REC=ci the clock stays: ci begin and
# ci end read go's mtimes against it.)
set -uo pipefail
cd "$(dirname "$0")/.."
# GOCACHE_BIN: the gocache to record with (default: built here, in cargo's
# target directory, wherever CARGO_TARGET_DIR puts it).
if [ -n "${GOCACHE_BIN:-}" ]; then
  G=$GOCACHE_BIN
else
  cargo build --release --quiet --bin gocache
  G=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/gocache
fi
GO=$(command -v go || true)
[ -n "$GO" ] || GO=$(ls "$PWD"/target/tmp/go-*/go/bin/go 2>/dev/null | head -1)
[ -x "$GO" ] || { echo "no go: run 'cargo test' once (it installs one into target/tmp)"; exit 1; }
export PATH="$(dirname "$GO"):$PATH"
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOENV=off GOTELEMETRY=off CGO_ENABLED=0 GOSUMDB=off
rec=${REC:-prog}
case $rec in prog|ci) ;; *) echo "REC must be prog or ci"; exit 2;; esac
W=${WORKDIR:-/tmp/gocache-workloads-$rec}
mkdir -p "$W"
which=${1:-all}
runs=${RUNS:-8}
ci() { [ "$rec" = ci ] && "$G" -q ci "$@" >/dev/null; return 0; }
setup() { # $1 name
  export GOCACHE=$W/$1/cache GOPATH=$W/$1/gopath GOMODCACHE=$W/$1/gopath/pkg/mod
  rm -rf "$W/$1"; mkdir -p "$GOCACHE" "$W/$1/src"
  (cd "$W/$1/src" && printf 'module warm\n\ngo 1.24\n' > go.mod && printf 'package main\nfunc main(){}\n' > m.go && go build -o /dev/null . )
  "$G" -q scan >/dev/null
  if [ "$rec" = prog ]; then export GOCACHEPROG="$G -q prog"; else unset GOCACHEPROG; fi
}
wl_std() { # A CI matrix: std and cmd tools built for three targets, vetted.
  setup std
  local targets=(linux/amd64 darwin/arm64 windows/amd64)
  local pkgs=(net/http encoding/json go/parser text/template crypto/tls archive/zip image/png database/sql)
  for r in $(seq "$runs"); do
    [ "$rec" = prog ] && export GOCACHE_TEST_NOW_OFFSET=$(( r * 9000 ))
    ci begin
    local t=${targets[$(( r % 3 ))]}
    GOOS=${t%/*} GOARCH=${t#*/} go build -o /dev/null "${pkgs[@]}" 2>/dev/null
    GOOS=${t%/*} GOARCH=${t#*/} go build -o /dev/null cmd/gofmt 2>/dev/null
    [ $(( r % 2 )) = 0 ] && go vet "${pkgs[@]:0:4}" >/dev/null 2>&1
    ci end
    echo "std run $r ($t) done"
  done
}
wl_tests() { # A developer testing std packages, a sliding window of them.
  setup tests
  local all=(strings bytes strconv sort bufio unicode/utf8 container/list container/heap encoding/base64 encoding/hex encoding/csv encoding/binary text/tabwriter path path/filepath regexp regexp/syntax hash/crc32 hash/fnv math/bits html net/url mime)
  for r in $(seq "$runs"); do
    [ "$rec" = prog ] && export GOCACHE_TEST_NOW_OFFSET=$(( r * 9000 ))
    ci begin
    local s=$(( (r * 3) % ${#all[@]} )) win=()
    for k in $(seq 0 7); do win+=("${all[$(( (s + k) % ${#all[@]} ))]}"); done
    go test -count=1 -run '^$' "${win[@]}" >/dev/null 2>&1
    go test -run 'Example' "${win[@]:0:3}" >/dev/null 2>&1
    ci end
    echo "tests run $r done"
  done
}
write_app() { # $1 dir $2 branch $3 dep version
  local d=$1
  mkdir -p "$d/app/api" "$d/app/store" "$d/app/cmd/tool" "$d/dep"
  printf 'module example.com/dep\n\ngo 1.24\n' > "$d/dep/go.mod"
  printf 'package dep\n\nimport "strings"\n\nconst Version = "v%s"\n\nfunc Shout(s string) string { return strings.ToUpper(s) + Version }\n' "$3" > "$d/dep/dep.go"
  printf 'module example.com/app\n\ngo 1.24\n\nrequire example.com/dep v0.0.0\n\nreplace example.com/dep => ../dep\n' > "$d/app/go.mod"
  printf 'package api\n\nimport (\n\t"encoding/json"\n\t"net/http"\n\n\t"example.com/dep"\n)\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tjson.NewEncoder(w).Encode(map[string]string{"v": dep.Shout("%s")})\n}\n' "$2" > "$d/app/api/api.go"
  printf 'package api\n\nimport (\n\t"net/http/httptest"\n\t"testing"\n)\n\nfunc TestHandler(t *testing.T) {\n\tw := httptest.NewRecorder()\n\tHandler(w, httptest.NewRequest("GET", "/", nil))\n\tif w.Code != 200 {\n\t\tt.Fatal(w.Code)\n\t}\n}\n' > "$d/app/api/api_test.go"
  printf 'package store\n\nimport (\n\t"database/sql"\n\t"text/template"\n)\n\nvar T = template.Must(template.New("x").Parse("{{.}} %s"))\n\nfunc Open() (*sql.DB, error) { return sql.Open("none", "") }\n' "$2" > "$d/app/store/store.go"
  printf 'package main\n\nimport (\n\t"fmt"\n\t"go/format"\n)\n\nfunc main() { b, _ := format.Source([]byte("package x")); fmt.Println(string(b)) }\n' > "$d/app/cmd/tool/main.go"
  printf 'package main\n\nimport (\n\t"net/http"\n\n\t"example.com/app/api"\n\t_ "example.com/app/store"\n)\n\nfunc main() { http.HandleFunc("/", api.Handler) }\n' > "$d/app/main.go"
  find "$d" -name '*.go' -o -name go.mod | xargs touch -d '-2 minutes'
}
wl_app() { # An app: branch switches, dependency bumps, tests, go run a tool.
  setup app
  local d=$W/app/src branches=(main feature-a feature-b) dep=1
  for r in $(seq "$runs"); do
    [ "$rec" = prog ] && export GOCACHE_TEST_NOW_OFFSET=$(( r * 9000 ))
    ci begin
    local b=${branches[$(( (r * 7 / 3) % 3 ))]}
    [ $(( r % 3 )) = 0 ] && dep=$(( dep + 1 ))
    write_app "$d" "$b" "$dep"
    (cd "$d/app" && go build -o /dev/null ./... && go test ./... >/dev/null 2>&1 && go run ./cmd/tool >/dev/null && go vet ./... >/dev/null 2>&1)
    ci end
    echo "app run $r ($b, dep v$dep) done"
  done
}
for w in std tests app; do
  [ "$which" = all ] || [ "$which" = $w ] || continue
  start=$(date +%s)
  "wl_$w"
  export GOCACHE=$W/$w/cache
  unset GOCACHEPROG
  "$G" -q trace export -o "$W/$w.jsonl"
  echo "$w: $(( $(date +%s) - start )) s, $(wc -l < "$W/$w.jsonl") lines"
  "$G" simulate "$W/$w.jsonl" --budget 20% --budget 30% --budget 50% > "$W/$w.txt" 2>&1
  "$G" simulate "$W/$w.jsonl" --budget 20% --budget 30% --budget 50% --json > "$W/$w.json" 2>/dev/null
done
