#!/usr/bin/env bash
# Records which of the gateway's functions run, and writes them to
# gateway/code-order.txt, the order the linker lays the release build's
# code out in (gateway/build.rs): the functions a request runs first, the
# hottest first, then those only start-up runs. Everything else (the
# Kubernetes client, the CLI, error paths) comes after them,
# so an idle standalone gateway maps in a few megabytes of code instead
# of most of its executable (docs/benchmarks.md, "Idle memory").
#
# Runs a release build under valgrind's callgrind (apt-get install
# valgrind), on the SQLite audit (the embedded default), on a PostgreSQL
# audit (a throwaway server, as in a cluster) and with --no-audit:
# start-up (dumped separately), then health, metrics, models, chat completions (whole and streamed), tool-call decisions
# (allowed, denied, unknown key). Regenerate after a dependency update
# or a change to the request path: a name the executable no longer has
# is skipped by the linker, and the script prints how many of the listed
# functions the current build still has.
#
#   bash bench/code_order.sh            # rewrites gateway/code-order.txt, links, checks
#   CHECK=1 bash bench/code_order.sh    # only checks: ≥ 80 % of the names there, laid out first
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
ORDER=gateway/code-order.txt
if [ -n "${CHECK:-}" ]; then
  cargo build --release --locked -q -p palisade-gateway
  exec python3 bench/code_order.py check target/release/palisade-gateway "$ORDER"
fi
command -v valgrind > /dev/null || { echo "bench/code_order.sh needs valgrind: apt-get install valgrind" >&2; exit 2; }
start_bench
write_policy "$WORK/policy.yaml" "$UP"
start_postgres "$WORK/pg"
KEY=(-H 'authorization: Bearer bench-key' -H 'content-type: application/json')
CHAT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
STREAM='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
drive() { # URL
  local i
  for i in $(seq 20); do
    curl -sf -o /dev/null "$1/healthz"
    curl -s -o /dev/null "$1/readyz"
    curl -sf -o /dev/null "${KEY[@]}" -d "$CHAT" "$1/v1/chat/completions"
    curl -sf -o /dev/null "${KEY[@]}" -d "$STREAM" "$1/v1/chat/completions"
    curl -sf -o /dev/null "${KEY[@]}" -d '{"tool":"search_web","arguments":{"q":"opening hours"}}' "$1/v1/tool-calls"
    curl -s -o /dev/null "${KEY[@]}" -d '{"tool":"delete_everything"}' "$1/v1/tool-calls"
    curl -s -o /dev/null -H 'authorization: Bearer wrong' -d "$CHAT" "$1/v1/chat/completions"
  done
  curl -sf -o /dev/null "${KEY[@]}" "$1/v1/models"
  curl -sf -o /dev/null "$1/metrics"
}
for variant in sqlite postgres no-audit; do
  case $variant in
    sqlite) AUDIT=(--audit-url "sqlite://$WORK/audit.db") ;;
    postgres) AUDIT=(--audit-url "$PG_URL") ;;
    *) AUDIT=(--no-audit) ;;
  esac
  valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$WORK/cg-$variant.%p" \
    "$T/palisade-gateway" run --config "$WORK/policy.yaml" --listen 127.0.0.1:0 "${AUDIT[@]}" \
    > "$WORK/gw.out" 2> "$WORK/gw.err" & pid=$!
  for _ in $(seq 600); do [ -s "$WORK/gw.out" ] && break; sleep 0.2; done
  GW=$(first_line "$WORK/gw.out" "$WORK/gw.err" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
  sleep 2
  callgrind_control --dump=start-up "$pid" > /dev/null
  drive "$GW"
  kill -TERM "$pid"
  wait "$pid"
done
# The standalone default's code first, then what the other two add.
python3 bench/code_order.py write "$T/palisade-gateway" "$ORDER" \
  "$WORK"/cg-sqlite.* "$WORK"/cg-no-audit.* "$WORK"/cg-postgres.*
# Linked again in the new order (~5 min), and checked as CI checks it.
cargo build --release -q -p palisade-gateway
python3 bench/code_order.py check "$T/palisade-gateway" "$ORDER"
