#!/usr/bin/env bash
# What a PostgreSQL outage costs the requests the gateway keeps serving.
# The gateway (audit -> PostgreSQL; GW_OLD=<binary> adds an older build
# next to it) takes RATE req/s while PostgreSQL is up, then while it is
# stopped (events go to the spool), ROUNDS alternating steps of
# SECONDS_PER_STEP each; then PostgreSQL is started again and the script
# waits until every gateway has drained its spool. Prints each step (kept
# in bench/out/outage.jsonl, or RESULTS=FILE, e.g. under bench/results/
# for a run to keep), the median p50/p99 per gateway and phase,
# and the audit counters after the drain. Targets pinned as LAYOUT says
# (see bench/run.sh; default shared).
#
#   bash bench/outage.sh
#   GW_OLD=/tmp/palisade-gateway.old ROUNDS=4 SECONDS_PER_STEP=10 bash bench/outage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
RATE=${RATE:-1000}
STEP=${SECONDS_PER_STEP:-6}
ROUNDS=${ROUNDS:-3}
LAYOUT=${LAYOUT:-shared}
set_layout
start_bench
start_postgres "$WORK/pg"
PG_START=(as_pg taskset -c "$PG_CPU" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w
  -o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1" start)

declare -A URLS
VARIANTS=(new)
start_gw() { # name binary
  # Each gateway its own directory, so its own spool (next to the policy).
  mkdir -p "$WORK/$1"
  write_policy "$WORK/$1/policy.yaml" "$UP"
  taskset -c "$TARGET_CPU" "$2" run --config "$WORK/$1/policy.yaml" --listen 127.0.0.1:0 --audit-url "$PG_URL" \
    > "$WORK/$1.out" 2>"$WORK/$1.err" & PIDS+=($!)
  URLS[$1]=$(first_line "$WORK/$1.out" "$WORK/$1.err" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
}
start_gw new "$T/palisade-gateway"
if [ -n "${GW_OLD:-}" ]; then
  start_gw old "$GW_OLD"
  VARIANTS+=(old)
fi

audit_metrics() { curl -s "$1/metrics" | grep -E '^palisade_audit_(written|spooled|drained|refused|failed)_total|^palisade_audit_(database_down|spool_bytes) ' | tr '\n' ' '; }

sleep 1
for v in "${VARIANTS[@]}"; do load_at_rate "${URLS[$v]}" 2 > /dev/null; done # warm up
RESULTS=${RESULTS:-bench/out/outage.jsonl}
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
steps() { # phase
  for round in $(seq "$ROUNDS"); do
    for v in "${VARIANTS[@]}"; do
      line="{\"phase\":\"$1\",\"round\":$round,\"variant\":\"$v\",\"result\":$(load_at_rate "${URLS[$v]}" "$STEP")}"
      echo "$line"
      echo "$line" >> "$RESULTS"
    done
  done
}
steps up
"${PG_STOP[@]}" > /dev/null
echo "PostgreSQL stopped"
steps down
"${PG_START[@]}" > /dev/null
echo "PostgreSQL started again; waiting for the spools to drain"
for v in "${VARIANTS[@]}"; do
  for _ in $(seq 600); do
    m=$(audit_metrics "${URLS[$v]}")
    [[ $m == *"palisade_audit_database_down 0"* && $m == *"palisade_audit_spool_bytes 0"* ]] && break
    sleep 0.1
  done
  echo "$v after the drain: $m"
done
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["variant"], r["phase"]), []).append(r["result"])
print("\nmedians over the rounds (p99 of each step in brackets):")
for (v, phase), rs in by.items():
    p50 = statistics.median(r["p50_ms"] for r in rs)
    p99 = statistics.median(r["p99_ms"] for r in rs)
    each = " ".join(f"{r['p99_ms']:.2f}" for r in rs)
    errors = sum(r["errors"] for r in rs)
    print(f"  {v:4s} database {phase:4s}  p50 {p50:.3f}  p99 {p99:.3f} ms  [{each}]  errors {errors}")
PY
