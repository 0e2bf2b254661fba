#!/usr/bin/env bash
# The embedded default under sustained load: the standalone gateway on its
# default SQLite audit (no --audit-url: palisade-audit.db next to the
# policy; every chat row durable before the answer, the default) takes
# RATE chat completions per second (default 5,000, open loop, 32
# connections) for SECONDS (default 60) from an instant upstream. Checks
# what a user would: every request answered 200, every answer's row in
# the database, the audit queue empty within 2 s of the end, and the
# gateway's RSS (sampled every second) bounded. Prints one JSON line,
# appended to bench/out/sqlite-load.jsonl (RESULTS=FILE to keep it, e.g.
# under bench/results/); exits 1 when a check fails. Pinned as LAYOUT
# says (bench/run.sh; default split: gateway on CPU 1, upstream and load
# on CPU 0).
#
#   bash bench/sqlite_load.sh
#   RATE=2000 SECONDS_LOAD=20 bash bench/sqlite_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
RATE=${RATE:-5000}
DURATION=${SECONDS_LOAD:-60}
set_layout
start_bench
write_policy "$WORK/policy.yaml" "$UP"
taskset -c "$TARGET_CPU" "$T/palisade-gateway" run --config "$WORK/policy.yaml" --listen 127.0.0.1:0 \
  > "$WORK/gw.out" 2>"$WORK/gw.err" & GW_PID=$!
PIDS+=("$GW_PID")
GW=$(first_line "$WORK/gw.out" "$WORK/gw.err" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
DB="$WORK/palisade-audit.db"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status"; }
metric() { curl -s "$GW/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

RATE_SAVED=$RATE; RATE=200; load_at_rate "$GW" 2 > /dev/null; RATE=$RATE_SAVED # warm up
idle_rss=$(rss_kib)
rows_before=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from audit_events").fetchone()[0])' "$DB")
written_before=$(metric palisade_audit_written_total)

# RSS every second while the load runs.
( while kill -0 "$GW_PID" 2>/dev/null; do rss_kib; sleep 1; done ) > "$WORK/rss" & RSS_PID=$!
PIDS+=("$RSS_PID")
taskset -c 0 "$OHA" --no-tui --output-format json -z "${DURATION}s" -q "$RATE" --latency-correction -c 32 -m POST \
  -H 'authorization: Bearer bench-key' -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}' \
  "$GW/v1/chat/completions" > "$WORK/oha.json"
ended=$(date +%s.%N)
# The queue drained: palisade_audit_queue_depth back to 0.
drained_after=""
for _ in $(seq 100); do
  if [ "$(metric palisade_audit_queue_depth)" = 0 ]; then
    drained_after=$(python3 -c "import time; print(round(time.time() - $ended, 3))")
    break
  fi
  sleep 0.05
done
kill "$RSS_PID" 2>/dev/null || true
peak_rss=$(sort -n "$WORK/rss" | tail -n1)
written=$(( $(metric palisade_audit_written_total) - written_before ))
rows=$(( $(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from audit_events").fetchone()[0])' "$DB") - rows_before ))

RESULTS=${RESULTS:-bench/out/sqlite-load.jsonl}
mkdir -p "$(dirname "$RESULTS")"
python3 - "$WORK/oha.json" "$RATE" "$DURATION" "$rows" "$written" "${drained_after:-null}" "$idle_rss" "$peak_rss" \
  "$(metric palisade_audit_backpressure_total)" "$(uname -r)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" <<'PY' | tee -a "$RESULTS"
import json, sys
o = json.load(open(sys.argv[1]))
rate, seconds, rows, written = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
drained = None if sys.argv[6] == "null" else float(sys.argv[6])
idle, peak = int(sys.argv[7]), int(sys.argv[8])
codes = {str(k): v for k, v in (o.get("statusCodeDistribution") or {}).items()}
errors = {k: v for k, v in (o.get("errorDistribution") or {}).items() if "deadline" not in k}
cut = sum(v for k, v in (o.get("errorDistribution") or {}).items() if "deadline" in k)
ok = codes.get("200", 0)
pct = o.get("latencyPercentiles") or {}
result = {
    "bench": "sqlite-load",
    "offered_per_s": rate, "seconds": seconds,
    "answered_200": ok, "achieved_per_s": round(ok / seconds, 1),
    "not_200": {k: v for k, v in codes.items() if k != "200"}, "errors": errors,
    "cut_off_at_end": cut,
    "rows_written": rows, "written_total_delta": written,
    "queue_drained_after_s": drained,
    "idle_rss_mib": round(idle / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
    "backpressure_waits": int(float(sys.argv[9] or 0)),
    "p50_ms": round(pct.get("p50", 0) * 1000, 3), "p99_ms": round(pct.get("p99", 0) * 1000, 3),
    "kernel": sys.argv[10], "cpu": sys.argv[11],
}
# Requests cut off by oha at the deadline may or may not have been
# answered (and recorded) by the gateway: rows lie between the 200s and
# the 200s plus those.
checks = {
    "every request 200": not result["not_200"] and not errors,
    "at least 99% of the offered rate": ok >= 0.99 * rate * seconds,
    "every answered request recorded": ok <= rows <= ok + cut,
    "queue drained within 2 s": drained is not None and drained <= 2,
    "RSS bounded (peak <= idle + 64 MiB)": peak <= idle + 64 * 1024,
}
result["checks"] = {k: bool(v) for k, v in checks.items()}
print(json.dumps(result))
sys.exit(0 if all(checks.values()) else 1)
PY
