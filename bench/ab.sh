#!/usr/bin/env bash
# Interleaved A/B comparison at one fixed rate: several gateway variants
# (and the upstream directly, and nginx) stay up side by side, pinned as
# bench/run.sh's LAYOUT says (split: CPU 1), and
# the load (oha, CPU 0) visits them in turn, ROUNDS times. Alternating
# short steps cancels this machine's drift, which a single 10 s step per
# target does not (its p99 moves by ±0.3 ms from one step to the next).
# Prints each step (kept in bench/out/ab-LAYOUT.jsonl) and, per variant,
# the median p50/p99 and CPU per request over the rounds.
#
#   bash bench/ab.sh                                   # direct, nginx, audit off, audit to PostgreSQL
#   GW_OLD=/tmp/palisade-gateway.old bash bench/ab.sh  # also an older build, audit to PostgreSQL
#   RATE=1000 SECONDS_PER_STEP=15 ROUNDS=6 bash bench/ab.sh
#   LAYOUT=shared bash bench/ab.sh    # targets on the load's core, PostgreSQL on CPU 1 (as bench/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
RATE=${RATE:-1000}
set_layout
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
STEP=${SECONDS_PER_STEP:-15}
ROUNDS=${ROUNDS:-5}
ensure_oha
cargo build --release -q -p palisade-gateway -p palisade-fake-upstreams
T=target/release
start_scratch
start_upstream
start_postgres "$WORK/pg"
write_policy "$WORK/policy.yaml" "$UP"

declare -A URLS GWPID
start_gw() { # name binary args...
  local name=$1 bin=$2
  taskset -c "$TARGET_CPU" "$bin" run --config "$WORK/policy.yaml" --listen 127.0.0.1:0 "${@:3}" \
    > "$WORK/$name.out" 2>"$WORK/$name.err" & PIDS+=($!)
  GWPID[$name]=$!
  URLS[$name]=$(first_line "$WORK/$name.out" "$WORK/$name.err" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
}
VARIANTS=(direct nginx off pg)
URLS[direct]=$UP
GWPID[direct]=${PIDS[0]}
NGINX_PORT=$(free_port)
write_nginx_conf "$WORK/nginx" "$NGINX_PORT" "$UP"
taskset -c "$TARGET_CPU" "$(command -v nginx || echo /usr/sbin/nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx.err" & PIDS+=($!)
GWPID[nginx]=$!
URLS[nginx]=http://127.0.0.1:$NGINX_PORT
start_gw off "$T/palisade-gateway" --no-audit
start_gw pg "$T/palisade-gateway" --audit-url "$PG_URL"
if [ -n "${GW_OLD:-}" ]; then
  start_gw pg-old "$GW_OLD" --audit-url "$PG_URL"
  VARIANTS+=(pg-old)
fi

# CPU ticks of a process and its children (nginx's worker).
ticks() { local t=0 p; for p in $1 $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
sleep 1
for v in "${VARIANTS[@]}"; do load_at_rate "${URLS[$v]}" 3 > /dev/null; done # warm up
mkdir -p bench/out
RESULTS=bench/out/ab-$LAYOUT.jsonl
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    t0=$(ticks "${GWPID[$v]}")
    r=$(load_at_rate "${URLS[$v]}" "$STEP")
    t1=$(ticks "${GWPID[$v]}")
    line="{\"round\":$round,\"variant\":\"$v\",\"cpu_ticks\":$((t1 - t0)),\"result\":$r}"
    echo "$line"
    echo "$line" >> "$RESULTS"
  done
done
python3 - "$RESULTS" "$RATE" "$STEP" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rate, step, hz = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(r)
direct = by.get("direct", [])
print(f"\nmedians over {len(direct)} rounds at {rate:.0f} req/s, {step:.0f} s steps (added = variant - direct in the same round):")
for v, rs in by.items():
    p50 = statistics.median(r["result"]["p50_ms"] for r in rs)
    p99 = statistics.median(r["result"]["p99_ms"] for r in rs)
    cpu = statistics.median(r["cpu_ticks"] / hz / (rate * step) * 1e6 for r in rs)
    added = ""
    if v != "direct" and direct:
        d99 = statistics.median(r["result"]["p99_ms"] - d["result"]["p99_ms"] for r, d in zip(rs, direct))
        d50 = statistics.median(r["result"]["p50_ms"] - d["result"]["p50_ms"] for r, d in zip(rs, direct))
        added = f"  added p50 {d50:.3f} p99 {d99:.3f} ms"
    print(f"  {v:8s} p50 {p50:.3f} p99 {p99:.3f} ms  cpu {cpu:.0f} µs/req{added}")
PY
