#!/usr/bin/env bash
# Where palisade-gateway spends its CPU under load: perf (software clock
# sampling, which works inside VMs without hardware counters) on the
# gateway, pinned to CPU 1, while oha sends non-streamed chat completions at
# RATE req/s (default 4,000) for DURATION seconds (default 10) from CPU 0. Prints
# CPU-seconds per 1,000 requests and the hottest symbols; keeps perf.data
# in bench/out/profile/ for `perf report -i`.
#
#   bash bench/profile.sh                 # audit off (the proxy path alone)
#   AUDIT="--audit-url sqlite:///tmp/a.db" bash bench/profile.sh
#   LAYERS=1 bash bench/profile.sh        # with call graphs (DWARF): also the
#                                         # CPU by layer (bench/profile_layers.py)
#   ALLOCS=1 RATE=50 bash bench/profile.sh  # allocations per request instead: perf
#                                         # stat on uprobes at mimalloc's entry points
#                                         # (slow per call: keep the rate low)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
RATE=${RATE:-4000}
DURATION=${DURATION:-10}
# Connections: few for ALLOCS, so that a connection's own set-up is in few
# of the requests counted.
CONNS=${CONNS:-$([ -n "${ALLOCS:-}" ] && echo 2 || echo 128)}
AUDIT=${AUDIT:---no-audit}
# GW_BIN=/path/to/palisade-gateway profiles another build (an older one, to compare).
GW_BIN=${GW_BIN:-target/release/palisade-gateway}
OUT=bench/out/profile
mkdir -p "$OUT"
command -v perf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; }
start_bench
write_policy "$WORK/policy.yaml" "$UP"
# shellcheck disable=SC2086
taskset -c 1 "$GW_BIN" run --config "$WORK/policy.yaml" --listen 127.0.0.1:0 $AUDIT > "$WORK/gw.out" 2>/dev/null & GW_PID=$!; PIDS+=($GW_PID)
GW=$(first_line "$WORK/gw.out" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
CHAT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
load() { taskset -c 0 "$OHA" --no-tui --output-format json -z "$1" -q "$RATE" --latency-correction -c "$CONNS" -m POST \
  -H 'authorization: Bearer bench-key' -H 'content-type: application/json' -d "$CHAT" "$GW/v1/chat/completions"; }
load 3s > /dev/null # warm up
if [ -n "${ALLOCS:-}" ]; then
  # What Rust's global allocator calls into mimalloc (the mimalloc crate
  # uses the aligned entry points for every allocation).
  FUNCS=(mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned)
  EVENTS=()
  for f in "${FUNCS[@]}"; do
    perf probe -q -x "$GW_BIN" --add "$f" >/dev/null 2>&1 || true
    EVENTS+=(-e "probe_palisade:$f")
  done
  perf stat -x, "${EVENTS[@]}" -p "$GW_PID" -o "$OUT/allocs.txt" -- sleep "$((DURATION + 1))" &
  PERF=$!
  sleep 0.5
  summary=$(load "${DURATION}s" | python3 bench/oha_summary.py "$RATE" "$DURATION")
  wait "$PERF" || true
  for f in "${FUNCS[@]}"; do perf probe -q -d "probe_palisade:$f" >/dev/null 2>&1 || true; done
  echo "load: $summary"
  python3 - "$summary" "$DURATION" "$OUT/allocs.txt" <<'PY'
import json, sys
n = json.loads(sys.argv[1])["achieved"] * float(sys.argv[2])
counts = {p[2]: int(p[0]) for p in (l.strip().split(",") for l in open(sys.argv[3])) if len(p) > 2 and p[0].isdigit()}
for name, c in counts.items():
    print(f"{name}: {c / n:.1f} per request")
print(f"allocations per request: {sum(counts.values()) / n:.1f} ({sum(counts.values())} calls, {n:.0f} requests)")
PY
  exit 0
fi
CALLGRAPH=(-g)
FREQ=2000
# DWARF call graphs copy 32 KiB of stack per sample: fewer samples.
[ -n "${LAYERS:-}" ] && CALLGRAPH=(--call-graph dwarf,32768) FREQ=1000
ticks() { awk '{print $14 + $15}' "/proc/$GW_PID/stat"; }
t0=$(ticks)
perf record -q -F "$FREQ" -e cpu-clock "${CALLGRAPH[@]}" -p "$GW_PID" -o "$OUT/perf.data" -- sleep "$DURATION" 2>/dev/null &
PERF=$!
summary=$(load "${DURATION}s" | python3 bench/oha_summary.py "$RATE" "$DURATION")
wait "$PERF" || true
t1=$(ticks)
echo "load: $summary"
python3 - "$summary" "$t0" "$t1" "$(getconf CLK_TCK)" "$DURATION" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); t0, t1, hz, secs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
n = s["achieved"] * secs
print(f"gateway CPU: {(t1 - t0) / hz:.2f} s for {n:.0f} requests = {(t1 - t0) / hz / n * 1e6:.1f} µs per request")
PY
echo "by object:"
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -5 || true
echo "hottest symbols (self):"
perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep '%' | cut -c1-150 | head -"${TOP:-30}" || true
[ -z "${LAYERS:-}" ] || python3 bench/profile_layers.py "$OUT/perf.data"
