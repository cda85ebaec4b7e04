#!/usr/bin/env bash
# `gocache ci end` against `gocache trim`, like for like: the same cache
# after a job, the same budget, both meeting it; each run on a fresh copy,
# interleaved in pairs (alternating which goes first), with medians.
#
# Usage: scripts/ci-end-vs-trim.sh CACHE BUDGET [PAIRS] [WORKDIR]
#   CACHE    a cache with an open CI run: restored, `gocache ci begin`, a
#            job's go commands, and no `ci end` yet. For like for like, the
#            job's uses must be over an hour old (trim's grace period, and
#            Go's one-hour mtime lag): right after the job, trim must keep
#            them and stops short of the budget, while ci end knows them
#            (`scripts/bench.sh N W ci` measures that case). One way: the
#            `ci` part of bench.sh with a pause of two hours between its
#            job and its `ci end`.
#   BUDGET   bytes, for both (`--budget`)
#   PAIRS    interleaved pairs (default 3)
#   WORKDIR  where the copies go (default /tmp/gocache-ci-vs-trim; as much
#            free space as CACHE takes)
# GOCACHE_BIN: the gocache binary (default: build target/release/gocache).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 2 ]]; then
  sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
SRC=$(readlink -f "$1")
BUDGET=$2
PAIRS=${3:-3}
W=${4:-/tmp/gocache-ci-vs-trim}
[[ -d "$SRC/gocache" ]] || { echo "error: $SRC has no gocache index; see the usage" >&2; exit 2; }
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "error: BUDGET must be a number of bytes, not '$BUDGET'" >&2; exit 2; }
if [[ -z "${GOCACHE_BIN:-}" ]]; then
  cargo build --release --quiet --bin gocache
  GOCACHE_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/gocache
fi
G=$GOCACHE_BIN
mkdir -p "$W"
B=$W/cache

# A fresh copy: the subdirectories four at a time (a 1M-entry cache takes
# minutes), mtimes kept, then the dirty pages written out.
copy() {
  rm -rf "${B:?}"
  mkdir "$B"
  find "$SRC" -mindepth 1 -maxdepth 1 ! -regex '.*/[0-9a-f][0-9a-f]' -exec cp -a {} "$B/" \;
  find "$SRC" -mindepth 1 -maxdepth 1 -regex '.*/[0-9a-f][0-9a-f]' -printf '%f\n' |
    xargs -P4 -I{} cp -a "$SRC/{}" "$B/{}"
  touch -r "$SRC" "$B"
  sync
  sleep 2
}
# One run on a fresh copy: prints its wall milliseconds; keeps its JSON.
run() { # name args...
  copy
  local s=$EPOCHREALTIME
  "$G" -q --cache-dir "$B" "${@:2}" --json > "$W/$1.json"
  local e=$EPOCHREALTIME
  echo $(( (${e/./} - ${s/./}) / 1000 ))
}
summary() { python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = d.get("timings", {})
x = d.get("executed") or {}
print("removed %d, budget %s; sync %.1f s, mark %.1f s, plan %.1f s, execute %.1f s" % (
    x.get("removed", 0), "met" if d.get("limits_met") else "NOT met",
    t.get("sync_seconds", 0), t.get("mark_seconds", 0), t.get("plan_seconds", 0),
    t.get("execute_seconds", 0)))' "$1"; }

END=(ci end --budget "$BUDGET")
# Ages off: ci end has none (runs replace them), so both do the budget.
TRIM=(trim --budget "$BUDGET" --build-max-age off --exe-max-age off)
echo "== ci end vs trim: $SRC, budget $BUDGET, $PAIRS pairs; load $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$W/times.txt"
for i in $(seq 1 "$PAIRS"); do
  if (( i % 2 )); then
    e=$(run "end-$i" "${END[@]}"); t=$(run "trim-$i" "${TRIM[@]}")
  else
    t=$(run "trim-$i" "${TRIM[@]}"); e=$(run "end-$i" "${END[@]}")
  fi
  echo "$e $t" >> "$W/times.txt"
  printf '  pair %d: ci end %6d ms (%s)\n          trim   %6d ms (%s)\n' \
    "$i" "$e" "$(summary "$W/end-$i.json")" "$t" "$(summary "$W/trim-$i.json")"
done
rm -rf "${B:?}"
python3 - "$W/times.txt" <<'EOF'
import statistics as st, sys
pairs = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
end, trim = [p[0] for p in pairs], [p[1] for p in pairs]
print("  trim   median %.2f s [%.2f-%.2f]" % (st.median(trim) / 1e3, min(trim) / 1e3, max(trim) / 1e3))
print("  ci end median %.2f s [%.2f-%.2f]" % (st.median(end) / 1e3, min(end) / 1e3, max(end) / 1e3))
print("  ci end / trim: %.3fx the medians; pairs %s (target <= 1.0)" % (
    st.median(end) / st.median(trim), " ".join("%.3f" % (e / t) for e, t in pairs)))
EOF
