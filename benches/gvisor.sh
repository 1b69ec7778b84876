#!/usr/bin/env bash
# print(1) on the docker executor under runc (`default` policy) and under gVisor (`gvisor`),
# taking turns, through the real API of a release build; prints the median and p90 wall time of
# each (as the client sees it) and their ratio. Needs root, the engine, the images and runsc
# registered (.ci/gvisor.sh). ROUNDS (default 30) runs of each.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-30}
bin=target/release/execbox
[ -x "$bin" ] || cargo build --release
data=$(mktemp -d)
out=$(mktemp)
EXECBOX_INSTANCE="bench-gvisor-$$" EXECBOX_LOG=warn "$bin" serve --listen 127.0.0.1:0 --data-dir "$data" >"$out" &
pid=$!
trap 'kill -TERM $pid; wait $pid 2>/dev/null; rm -rf "$data" "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
base=$(sed -n 's/^execbox listening on //p' "$out")
run() { # policy -> wall seconds of one request
  curl -s -o /dev/null -w '%{time_total}\n' -H 'content-type: application/json' \
    -d "{\"executor\":\"docker\",\"policy\":\"$1\",\"language\":\"python\",\"code\":\"print(1)\"}" "$base/v1/execute"
}
run default >/dev/null; run gvisor >/dev/null # the first run of each shape starts its pool
: >"$data/default"; : >"$data/gvisor"
for _ in $(seq "$ROUNDS"); do
  run default >>"$data/default"
  run gvisor >>"$data/gvisor"
done
stats() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%.0f %.0f", a[int((NR+1)/2)]*1000, a[int(NR*0.9)]*1000}'; }
read -r dm dp <<<"$(stats "$data/default")"
read -r gm gp <<<"$(stats "$data/gvisor")"
echo "print(1), docker executor, $ROUNDS runs each, taking turns"
echo "runc  (default policy): median ${dm} ms, p90 ${dp} ms"
echo "runsc (gvisor policy):  median ${gm} ms, p90 ${gp} ms"
awk -v g="$gm" -v d="$dm" 'BEGIN {printf "ratio gvisor/runc (median): %.2f\n", g/d}'
