#!/usr/bin/env bash
# Gateway overhead on loopback: the same open-loop load straight to a fake
# OpenAI-compatible upstream and through palisade-gateway (policy on,
# every decision audited to the embedded SQLite default), at 100, 500 and
# 1,000 requests/s, then climbing to find the highest rate with p99 < 10 ms.
# Also: idle and loaded RSS, CPU-seconds per 1,000 requests, added
# time-to-first-token on streamed answers, and the same chat load with the
# audit going to a local PostgreSQL (a throwaway server this script starts
# with the machine's initdb / pg_ctl) instead of SQLite.
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
# CPU-seconds per 1,000 requests between two cpu() readings at a rate.
per_1000() { printf '%.4f' "$(echo "($2 - $1) / $TICKS / ($3 * $DURATION) * 1000" | bc -l)"; }
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
  echo "{\"rate\":$rate,\"direct\":$d,\"gateway\":$g,\"tool_calls\":$t,\"gateway_cpu_s_per_1000\":$(per_1000 "$c0" "$c1" "$rate"),\"rss_kib\":$loaded_rss}" >> "$RESULTS"
done
# Streamed answers: time to the first event, direct and through the gateway
# (before the saturation steps, whose audit backlog would still be draining).
STREAM='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
for rate in 100 500; do
  d=$(pin 0 "$T/loadgen" --ttft --url "$UP/v1/chat/completions" --rate "$rate" --duration "$DURATION" --body "$STREAM")
  g=$(pin 0 "$T/loadgen" --ttft --url "$GW/v1/chat/completions" --rate "$rate" --duration "$DURATION" --body "$STREAM" --header "authorization: Bearer bench-key")
  echo "{\"ttft_rate\":$rate,\"direct\":$d,\"gateway\":$g}" >> "$RESULTS"
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

kill "$GWPID"; wait "$GWPID" 2>/dev/null || true

# The audit to a local PostgreSQL.
INITDB=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -n1)
PGBIN=$(dirname "$(readlink -f "$INITDB")")
PGDIR="$WORK/pg"; mkdir -p "$PGDIR"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK" && chmod 755 "$WORK"
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U palisade --auth=trust -E UTF8 --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null
pg_cleanup() { as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; cleanup; }
trap pg_cleanup EXIT
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U palisade palisade
"${TS1[@]}" "$T/palisade-gateway" run --config "$WORK/bench.yaml" --listen 127.0.0.1:0 \
  --audit-url "postgres://palisade@127.0.0.1:$PGPORT/palisade" > "$WORK/gwpg.out" 2>"$WORK/gwpg.err" & GWPID=$!; PIDS+=($GWPID)
GW=$(first_line "$WORK/gwpg.out" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
sleep 1
for rate in 100 500 1000; do
  d=$(load "$UP/v1/chat/completions" "$rate" "$CHAT")
  c0=$(cpu)
  g=$(load "$GW/v1/chat/completions" "$rate" "$CHAT")
  c1=$(cpu)
  echo "{\"pg_rate\":$rate,\"direct\":$d,\"gateway\":$g,\"gateway_cpu_s_per_1000\":$(per_1000 "$c0" "$c1" "$rate")}" >> "$RESULTS"
done
ROWS=$(as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U palisade -tAc 'SELECT count(*) FROM audit_events' palisade)
echo "{\"pg_audit_rows\":$ROWS}" >> "$RESULTS"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'rate':>6} {'direct p50/p99 ms':>20} {'gateway p50/p99 ms':>20} {'added p50/p99 ms':>18} {'tool-calls p50/p99':>20} {'cpu s/1k':>9} {'rss MiB':>8}")
for r in rows:
    if "ttft_rate" in r:
        d, g = r["direct"], r["gateway"]
        print(f"streamed TTFT at {r['ttft_rate']}/s: direct {d['p50_ms']:.3f}/{d['p99_ms']:.3f} ms, gateway {g['p50_ms']:.3f}/{g['p99_ms']:.3f} ms, "
              f"added {g['p50_ms']-d['p50_ms']:.3f}/{g['p99_ms']-d['p99_ms']:.3f} ms (p50/p99)")
    elif "pg_rate" in r:
        d, g = r["direct"], r["gateway"]
        print(f"audit to PostgreSQL, {r['pg_rate']}/s: direct {d['p50_ms']:.3f}/{d['p99_ms']:.3f}, gateway {g['p50_ms']:.3f}/{g['p99_ms']:.3f}, "
              f"added {g['p50_ms']-d['p50_ms']:.3f}/{g['p99_ms']-d['p99_ms']:.3f} ms; cpu {r['gateway_cpu_s_per_1000']:.3f} s/1k; errors {g['errors']}")
    elif "pg_audit_rows" in r:
        print(f"audit rows in PostgreSQL: {r['pg_audit_rows']}")
    elif "direct" in r:
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
