#!/usr/bin/env bash
# Gateway overhead on loopback: the same open-loop load straight to a fake
# OpenAI-compatible upstream and through palisade-gateway (policy on,
# every decision audited to the embedded SQLite default), at 100, 500 and
# 1,000 requests/s, then climbing to find the highest rate with p99 < 10 ms.
# Also: idle and loaded RSS, CPU-seconds per 1,000 requests.
#
#   bash bench/run.sh            # results in bench/out/, summary on stdout
#
# Pinning: the gateway runs on CPU 1; the upstream and the load generator
# share CPU 0 (a 2-core machine). Cleans up every process it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
cargo build --release -q -p palisade-gateway -p palisade-fake-upstreams -p palisade-bench
T=target/release
OUT=bench/out
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

first_line() { for _ in $(seq 100); do [ -s "$1" ] && { head -n1 "$1"; return; }; sleep 0.05; done; echo "no output in $1" >&2; exit 1; }
# Background processes are started with taskset directly (it execs), so $!
# is the process itself: its /proc entry is measured and it is killed.
TS0=(); TS1=()
if command -v taskset >/dev/null; then TS0=(taskset -c 0); TS1=(taskset -c 1); fi
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

"${TS0[@]}" "$T/fake-openai" --port 0 > "$WORK/up.out" & PIDS+=($!)
UP=$(first_line "$WORK/up.out")
cat > "$WORK/bench.yaml" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: bench}
spec:
  agents: [{name: load, apiKeySecretRef: {name: k, key: load}}]
  providers: [{name: up, type: openai, baseUrl: "$UP"}]
  routing:
    defaultProvider: up
    rules: [{name: phi, keywords: [patient, diagnosis, prescription], provider: up}]
  tools:
    rules: [{tools: [search_*], action: Allow}]
---
apiVersion: v1
kind: Secret
metadata: {name: k}
stringData: {load: bench-key}
YAML
"${TS1[@]}" "$T/palisade-gateway" run --config "$WORK/bench.yaml" --listen 127.0.0.1:0 > "$WORK/gw.out" 2>"$WORK/gw.err" & GWPID=$!; PIDS+=($GWPID)
GW=$(first_line "$WORK/gw.out" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$GWPID/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$GWPID/stat"; }
TICKS=$(getconf CLK_TCK)
IDLE_RSS=$(rss)

CHAT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
TOOL='{"tool":"search_web","arguments":{"q":"opening hours"}}'
load() { pin 0 "$T/loadgen" --url "$1" --rate "$2" --duration "$DURATION" --body "$3" --header "authorization: Bearer bench-key"; }

RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
for rate in 100 500 1000; do
  d=$(load "$UP/v1/chat/completions" "$rate" "$CHAT")
  c0=$(cpu)
  g=$(load "$GW/v1/chat/completions" "$rate" "$CHAT")
  c1=$(cpu)
  t=$(load "$GW/v1/tool-calls" "$rate" "$TOOL")
  loaded_rss=$(rss)
  echo "{\"rate\":$rate,\"direct\":$d,\"gateway\":$g,\"tool_calls\":$t,\"gateway_cpu_s_per_1000\":$(printf '%.4f' "$(echo "($c1 - $c0) / $TICKS / ($rate * $DURATION) * 1000" | bc -l)"),\"rss_kib\":$loaded_rss}" >> "$RESULTS"
done
MAX=0
for rate in 2000 3000 4000 5000 6000 8000; do
  g=$(load "$GW/v1/chat/completions" "$rate" "$CHAT")
  echo "{\"saturation_rate\":$rate,\"gateway\":$g}" >> "$RESULTS"
  p99=$(echo "$g" | sed -E 's/.*"p99_ms":([0-9.]+).*/\1/')
  ok=$(echo "$g" | sed -E 's/.*"errors":([0-9]+).*/\1/')
  if [ "$ok" != "0" ] || [ "$(echo "$p99 >= 10" | bc -l)" = 1 ]; then break; fi
  MAX=$rate
done
echo "{\"idle_rss_kib\":$IDLE_RSS,\"max_rate_p99_under_10ms\":$MAX}" >> "$RESULTS"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'rate':>6} {'direct p50/p99 ms':>20} {'gateway p50/p99 ms':>20} {'added p50/p99 ms':>18} {'tool-calls p50/p99':>20} {'cpu s/1k':>9} {'rss MiB':>8}")
for r in rows:
    if "direct" in r:
        d, g, t = r["direct"], r["gateway"], r["tool_calls"]
        print(f"{r['rate']:>6} {d['p50_ms']:>9.3f}/{d['p99_ms']:<9.3f} {g['p50_ms']:>9.3f}/{g['p99_ms']:<9.3f} "
              f"{g['p50_ms']-d['p50_ms']:>8.3f}/{g['p99_ms']-d['p99_ms']:<8.3f} {t['p50_ms']:>9.3f}/{t['p99_ms']:<9.3f} "
              f"{r['gateway_cpu_s_per_1000']:>9.3f} {r['rss_kib']/1024:>8.1f}")
    elif "saturation_rate" in r:
        g = r["gateway"]
        print(f"saturation {r['saturation_rate']}/s: achieved {g['achieved_rate']:.0f}/s p99 {g['p99_ms']:.2f} ms errors {g['errors']}")
    else:
        print(f"idle RSS {r['idle_rss_kib']/1024:.1f} MiB; highest tested rate with p99 < 10 ms: {r['max_rate_p99_under_10ms']}/s")
PY
