#!/usr/bin/env bash
# Interleaved A/B comparison at one fixed rate: several gateway variants
# (and the upstream directly, and nginx) stay up side by side, pinned as
# bench/run.sh's LAYOUT says (split: CPU 1), and
# the load (oha, CPU 0) visits them in turn, ROUNDS times. Alternating
# short steps cancels this machine's drift, which a single 10 s step per
# target does not (its p99 moves by ±0.3 ms from one step to the next).
# Prints each step (kept in bench/out/ab-LAYOUT-KIND.jsonl, or RESULTS=FILE,
# e.g. under bench/results/ for a run to keep) and, per variant,
# the median p50/p99 and CPU per request over the rounds.
#
#   bash bench/ab.sh                                   # direct, nginx, audit off, audit to PostgreSQL
#   GW_OLD=/tmp/palisade-gateway.old bash bench/ab.sh  # also an older build, audit to PostgreSQL
#   GW_OLD=... GW_OLD_AUDIT=sqlite bash bench/ab.sh     # the older and this build, each on its own SQLite file
#                                                       # (an older build refuses a PostgreSQL schema this one migrated)
#   RATE=1000 SECONDS_PER_STEP=15 ROUNDS=6 bash bench/ab.sh
#   LAYOUT=shared bash bench/ab.sh    # targets on the load's core, PostgreSQL on CPU 1 (as bench/run.sh)
#   DURABILITY=1 bash bench/ab.sh     # also what answered-means-recorded costs: SQLite
#                                     # (synchronous=normal, the default, and =full) and
#                                     # PostgreSQL with chat rows durable (the default) and
#                                     # `--audit-chat-events buffered`
#   KIND=ttft LAYOUT=shared bash bench/ab.sh   # time to first token instead (bench/run.sh's TTFT step:
#                                              # 50 streams/s of 64 chunks each, `loadgen --ttft`),
#                                              # judged from each request's send
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
KIND=${KIND:-rate}
case $KIND in
  rate) RATE=${RATE:-1000} UPSTREAM_ARGS=() ;;
  ttft) RATE=${RATE:-50} UPSTREAM_ARGS=(--stream-chunks 64 --chunk-interval-ms 20) ;;
  *) echo "KIND must be rate or ttft, not '$KIND'" >&2; exit 2 ;;
esac
set_layout
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
SECS=${SECONDS_PER_STEP:-15}
ROUNDS=${ROUNDS:-5}
ensure_oha
cargo build --release -q -p palisade-gateway -p palisade-fake-upstreams -p palisade-bench
T=target/release
start_scratch
start_upstream "${UPSTREAM_ARGS[@]}"
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
if [ -n "${DURABILITY:-}" ]; then
  start_gw pg-buffered "$T/palisade-gateway" --audit-url "$PG_URL" --audit-chat-events buffered
  start_gw sqlite "$T/palisade-gateway" --audit-url "sqlite://$WORK/durable.db"
  start_gw sqlite-full "$T/palisade-gateway" --audit-url "sqlite://$WORK/full.db?synchronous=full"
  start_gw sqlite-buffered "$T/palisade-gateway" --audit-url "sqlite://$WORK/buffered.db" --audit-chat-events buffered
  VARIANTS+=(pg-buffered sqlite sqlite-full sqlite-buffered)
fi
if [ -n "${GW_OLD:-}" ]; then
  case ${GW_OLD_AUDIT:-pg} in
    pg) start_gw pg-old "$GW_OLD" --audit-url "$PG_URL"
        VARIANTS+=(pg-old) ;;
    sqlite) start_gw sqlite-old "$GW_OLD" --audit-url "sqlite://$WORK/old.db"
        VARIANTS+=(sqlite-old)
        if [ -z "${DURABILITY:-}" ]; then
          start_gw sqlite "$T/palisade-gateway" --audit-url "sqlite://$WORK/durable.db"
          VARIANTS+=(sqlite)
        fi ;;
    *) echo "GW_OLD_AUDIT must be pg or sqlite, not '$GW_OLD_AUDIT'" >&2; exit 2 ;;
  esac
fi

# CPU ticks of a process and its children (nginx's worker).
ticks() { local t=0 p; for p in $1 $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
sleep 1
step() { # URL SECONDS
  if [ "$KIND" = ttft ]; then
    taskset -c 0 "$T/loadgen" --ttft --url "$1/v1/chat/completions" --rate "$RATE" --duration "$2" \
      --body '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}' \
      --header 'authorization: Bearer bench-key'
  else
    load_at_rate "$1" "$2"
  fi
}
for v in "${VARIANTS[@]}"; do step "${URLS[$v]}" 3 > /dev/null; done # warm up
RESULTS=${RESULTS:-bench/out/ab-$LAYOUT-$KIND.jsonl}
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    t0=$(ticks "${GWPID[$v]}")
    r=$(step "${URLS[$v]}" "$SECS")
    t1=$(ticks "${GWPID[$v]}")
    line="{\"round\":$round,\"variant\":\"$v\",\"cpu_ticks\":$((t1 - t0)),\"result\":$r}"
    echo "$line"
    echo "$line" >> "$RESULTS"
  done
done
python3 - "$RESULTS" "$RATE" "$SECS" "$(getconf CLK_TCK)" "$KIND" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rate, step, hz = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
# Time to first token is judged from each request's send (loadgen's
# own timer jitter left out), as bench/report.py does.
k50, k99 = ("sent_p50_ms", "sent_p99_ms") if sys.argv[5] == "ttft" else ("p50_ms", "p99_ms")
by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(r)
direct = by.get("direct", [])
print(f"\nmedians over {len(direct)} rounds at {rate:.0f} req/s, {step:.0f} s steps (added = variant - direct in the same round):")
for v, rs in by.items():
    p50 = statistics.median(r["result"][k50] for r in rs)
    p99 = statistics.median(r["result"][k99] for r in rs)
    cpu = statistics.median(r["cpu_ticks"] / hz / (rate * step) * 1e6 for r in rs)
    added = ""
    if v != "direct" and direct:
        d99 = statistics.median(r["result"][k99] - d["result"][k99] for r, d in zip(rs, direct))
        d50 = statistics.median(r["result"][k50] - d["result"][k50] for r, d in zip(rs, direct))
        added = f"  added p50 {d50:.3f} p99 {d99:.3f} ms"
    print(f"  {v:8s} p50 {p50:.3f} p99 {p99:.3f} ms  cpu {cpu:.0f} µs/req{added}")
PY
