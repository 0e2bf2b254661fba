#!/usr/bin/env bash
# The standalone gateway's memory at rest (issue 24: idle RSS ≤ 20 MB):
# VmRSS, and its two parts, of a gateway 2 s after it starts and again 1 s
# after a 2 s warm-up at 200 chat completions/s (8 connections) — once on
# an SQLite audit (the embedded default) and once with --no-audit, ROUNDS
# times (default 3). RssAnon is the gateway's own memory (heap, stacks,
# SQLite's page cache); RssFile is the pages of its executable mapped in
# (code and read-only data, shared and clean: the kernel can drop them
# under pressure and read them back). One JSON line per step, appended to
# bench/out/idle-rss.jsonl (RESULTS=FILE to keep them). GW_OLD=BINARY adds
# an older build's two variants to every round, started in turn with this
# build's (variants sqlite-old, no-audit-old).
#
#   bash bench/idle_rss.sh
#   GW_OLD=/tmp/palisade-gateway.old bash bench/idle_rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
ROUNDS=${ROUNDS:-3}
RESULTS=${RESULTS:-bench/out/idle-rss.jsonl}
mkdir -p "$(dirname "$RESULTS")"
start_bench
write_policy "$WORK/policy.yaml" "$UP"
CHAT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
kb() { awk -v k="$2" '$1==k":"{print $2}' "/proc/$1/status"; }
rss() { echo "$(kb "$1" VmRSS),$(kb "$1" RssAnon),$(kb "$1" RssFile)"; }
BUILD="$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +dirty)"
echo "{\"machine\":{\"cpus\":$(nproc),\"cpu\":\"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\",\"kernel\":\"$(uname -r)\",\"build\":\"$BUILD\",\"text_bytes\":$(size -A "$T/palisade-gateway" | awk '$1==".text"{print $2}')},\"fields\":[\"VmRSS\",\"RssAnon\",\"RssFile\"],\"unit\":\"kB\"}" >> "$RESULTS"
VARIANTS=(sqlite no-audit)
if [ -n "${GW_OLD:-}" ]; then
  [ -x "$GW_OLD" ] || { echo "GW_OLD=$GW_OLD is not an executable gateway build" >&2; exit 2; }
  VARIANTS=(sqlite sqlite-old no-audit no-audit-old)
fi
for round in $(seq 1 "$ROUNDS"); do
  for variant in "${VARIANTS[@]}"; do
    bin=$T/palisade-gateway
    [[ $variant == *-old ]] && bin=$GW_OLD
    if [[ $variant == sqlite* ]]; then AUDIT=(--audit-url "sqlite://$WORK/audit-$round-$variant.db"); else AUDIT=(--no-audit); fi
    "$bin" run --config "$WORK/policy.yaml" --listen 127.0.0.1:0 "${AUDIT[@]}" > "$WORK/gw.out" 2>/dev/null & GW_PID=$!
    GW=$(first_line "$WORK/gw.out" | sed -E 's/.*(http:\/\/[0-9.:]+).*/\1/')
    sleep 2
    fresh=$(rss "$GW_PID")
    "$OHA" --no-tui -z 2s -q 200 -c 8 -m POST -H 'authorization: Bearer bench-key' \
      -H 'content-type: application/json' -d "$CHAT" "$GW/v1/chat/completions" > /dev/null
    sleep 1
    warm=$(rss "$GW_PID")
    kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
    echo "{\"round\":$round,\"variant\":\"$variant\",\"fresh_kb\":[$fresh],\"warm_kb\":[$warm]}" | tee -a "$RESULTS"
  done
done
