#!/usr/bin/env bash
# Per-core throughput and scaling (`SCALE=1 bash bench/run.sh` runs this):
# nginx (N workers) and Palisade (`--worker-threads N`; policy on, with
# --no-audit, audit to PostgreSQL, and audit to SQLite, the embedded
# default) pinned to CPUs 0..N-1 for N = 1, 2, 4, … up to half the
# machine; the load (oha, closed loop, CONNS connections per target core,
# default 256: a durable audit answers after its commit, and with 64 the
# gateway waits on commits, not on its CPU), the instant upstream and
# PostgreSQL on the other half. At each N the
# contenders are up side by side and visited in turn ROUNDS times
# (default 5) for SECS seconds (default 5), so each ratio compares steps
# seconds apart. Reports, from the medians over the rounds:
#
#   ÷ nginx            Palisade's peak ÷ nginx's at the same N (target ≥ 0.8)
#   per CPU-second     requests per CPU-second of the contender's own
#                      processes ÷ nginx's: the per-core ratio when the
#                      load's CPUs, not the contender's, set the peak (as
#                      on a 2-core machine, where one CPU drives the load)
#   in the kernel      the part of the CPU per request spent in system
#                      calls (the sockets, SQLite's file writes, wake-ups)
#   scaling            peak at N ÷ (N × peak at 1) (target ≥ 0.8)
#
# On a 2-core machine only N = 1 fits beside the load (the target on CPU
# 0, everything else on CPU 1): the per-core ratio is measured, scaling
# is not, and the report says so.
#
#   SCALE=1 bash bench/run.sh
#   SCALE=1 ROUNDS=3 SECS=5 RESULTS=bench/results/scale-DATE.jsonl bash bench/run.sh
#
# GW_OLD=/path/to/older/palisade-gateway adds that build's three
# contenders (off-old, pg-old, sqlite-old) to each round, so a change is
# measured against the build before it minutes apart, not on another day.
# pg-old audits to a database of its own on the same server (a build
# refuses a schema newer than its own). GW_OLD_VARIANTS="off-old pg-old"
# leaves one out: a build from before 2026-12-05 (issue 24) writes
# SQLite at 1,000 events/s and keeps its CPU busy long after its own
# step, in the steps of the contenders after it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
CONNS=${CONNS:-256}
CPUS=$(nproc)
MAXN=$((CPUS / 2 > 0 ? CPUS / 2 : 1))
LOAD_CPUS=$([ "$CPUS" -gt 1 ] && echo "$MAXN-$((CPUS - 1))" || echo 0)
LOAD_N=$((CPUS - MAXN > 0 ? CPUS - MAXN : 1))
RESULTS=${RESULTS:-bench/out/scale.jsonl}
GATEWAYS=(off pg sqlite)
if [ -n "${GW_OLD:-}" ]; then
  [ -x "$GW_OLD" ] || { echo "GW_OLD=$GW_OLD is not an executable gateway build" >&2; exit 2; }
  read -ra old <<< "${GW_OLD_VARIANTS:-off-old pg-old sqlite-old}"
  GATEWAYS+=("${old[@]}")
fi
CONTENDERS=(nginx "${GATEWAYS[@]}")
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ensure_oha
cargo build --release -q -p palisade-gateway -p palisade-fake-upstreams
T=target/release
start_scratch
UPSTREAM_CPUS=$LOAD_CPUS start_upstream --threads "$(( (LOAD_N + 1) / 2 ))"
PG_CPU=$LOAD_CPUS start_postgres "$WORK/pg"
write_policy "$WORK/policy.yaml" "$UP"
if [ -n "${GW_OLD:-}" ]; then
  # The older build's own database and configuration directory (where
  # even --no-audit keeps approvals, in palisade-audit.db beside it).
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U palisade palisade_old
  mkdir -p "$WORK/old" && cp "$WORK/policy.yaml" "$WORK/old/policy.yaml"
fi
CHAT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
# CPU ticks (user + system) and system ticks of a process and its children
# (nginx's workers): "TOTAL SYSTEM".
ticks() { local t=0 k=0 p u s; for p in $1 $(pgrep -P "$1" || true); do read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat"); t=$((t + u + s)); k=$((k + s)); done; echo "$t $k"; }
peak() { # URL CONNECTIONS SECONDS -> oha_summary JSON
  taskset -c "$LOAD_CPUS" "$OHA" --no-tui --output-format json -z "${3}s" -c "$2" -m POST \
    -H 'authorization: Bearer bench-key' -H 'content-type: application/json' -d "$CHAT" "$1/v1/chat/completions" \
    | python3 bench/oha_summary.py 0 "$3"
}
mkdir -p "$(dirname "$RESULTS")"
echo "{\"machine\":{\"cpus\":$CPUS,\"cpu\":\"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\",\"kernel\":\"$(uname -r)\",\"load_cpus\":\"$LOAD_CPUS\",\"build\":\"$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +dirty)\",\"clk_tck\":$(getconf CLK_TCK),\"secs\":$SECS}}" > "$RESULTS"

n=1
while [ "$n" -le "$MAXN" ]; do
  echo "== $n core(s): CPUs 0-$((n - 1)), load on $LOAD_CPUS" >&2
  declare -A URL=() PID=()
  port=$(free_port)
  NGINX_WORKERS=$n TARGET_CPU=0 write_nginx_conf "$WORK/nginx$n" "$port" "$UP"
  taskset -c "0-$((n - 1))" "$NGINX" -p "$WORK/nginx$n" -c "$WORK/nginx$n/nginx.conf" 2>"$WORK/nginx$n.err" &
  PID[nginx]=$!
  URL[nginx]=http://127.0.0.1:$port
  for v in "${GATEWAYS[@]}"; do
    case $v in
      off*) audit=(--no-audit) ;;
      pg) audit=(--audit-url "$PG_URL") ;;
      pg-old) audit=(--audit-url "${PG_URL}_old") ;;
      sqlite*) audit=(--audit-url "sqlite://$WORK/audit-$v-$n.db") ;;
    esac
    bin=$T/palisade-gateway config=$WORK/policy.yaml
    [[ $v == *-old ]] && bin=$GW_OLD config=$WORK/old/policy.yaml
    taskset -c "0-$((n - 1))" "$bin" run --config "$config" --listen 127.0.0.1:0 \
      --worker-threads "$n" "${audit[@]}" > "$WORK/$v$n.out" 2>"$WORK/$v$n.err" &
    PID[$v]=$!
    URL[$v]=$(first_line "$WORK/$v$n.out" "$WORK/$v$n.err" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
  done
  PIDS+=("${PID[@]}")
  sleep 1
  for v in "${CONTENDERS[@]}"; do peak "${URL[$v]}" $((CONNS * n)) 2 > /dev/null; done # warm up
  for round in $(seq "$ROUNDS"); do
    for v in "${CONTENDERS[@]}"; do
      sleep 1
      read -r t0 k0 < <(ticks "${PID[$v]}")
      r=$(peak "${URL[$v]}" $((CONNS * n)) "$SECS")
      read -r t1 k1 < <(ticks "${PID[$v]}")
      line="{\"cores\":$n,\"round\":$round,\"variant\":\"$v\",\"cpu_ticks\":$((t1 - t0)),\"sys_ticks\":$((k1 - k0)),\"result\":$r}"
      echo "$line" >&2
      echo "$line" >> "$RESULTS"
    done
  done
  for v in "${CONTENDERS[@]}"; do kill "${PID[$v]}" 2>/dev/null || true; wait "${PID[$v]}" 2>/dev/null || true; done
  PIDS=("${PIDS[@]:0:${#PIDS[@]}-${#CONTENDERS[@]}}")
  unset URL PID
  n=$((n * 2))
done
python3 bench/scale_report.py "$RESULTS"
