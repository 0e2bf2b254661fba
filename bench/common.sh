# Shared by the bench scripts (sourced from the repository
# root): the load tool, waiting for a started process, the bench policy.

# oha from PATH, else installed once into target/bench-tools.
ensure_oha() {
  OHA=$(command -v oha || echo "$PWD/target/bench-tools/bin/oha")
  [ -x "$OHA" ] || cargo install -q --locked --root "$PWD/target/bench-tools" oha@1.16.0 --no-default-features --features rustls
}

# The first line a background process wrote to FILE (its URL); on timeout,
# shows ERRFILE and exits.
first_line() { # FILE [ERRFILE]
  for _ in $(seq 400); do [ -s "$1" ] && { head -n1 "$1"; return; }; sleep 0.05; done
  echo "no output in $1" >&2; cat "${2:-/dev/null}" >&2; exit 1
}

# The gateway's policy for the benchmarks: API-key identity (bench-key), a
# keyword routing rule, a tool rule; everything goes to the upstream UP.
write_policy() { # FILE UP
  cat > "$1" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: bench}
spec:
  agents: [{name: load, apiKeySecretRef: {name: k, key: load}}]
  providers: [{name: up, type: openai, baseUrl: "$2"}]
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
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A throwaway PostgreSQL in DIR on CPU PG_CPU (default 0; run as the postgres user when
# root). Sets PG_URL, PGBIN, PGPORT, as_pg and PG_STOP (the command that
# stops it; stop_scratch runs it).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_postgres() { # DIR
  local initdb dir=$1
  initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -n1)
  PGBIN=$(dirname "$(readlink -f "$initdb")")
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown -R postgres "$(dirname "$dir")" && chmod 755 "$(dirname "$dir")"
  PGPORT=$(free_port)
  as_pg "$PGBIN/initdb" -D "$dir/data" -U palisade --auth=trust -E UTF8 --no-sync >/dev/null
  as_pg taskset -c "${PG_CPU:-0}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $PGPORT -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
  PG_STOP=(as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop)
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U palisade palisade
  PG_URL="postgres://palisade@127.0.0.1:$PGPORT/palisade"
}

# nginx's worker_cpu_affinity mask for CPUs 0..N-1 shifted by FIRST:
# cpu_mask 2 1 -> 110 (CPUs 1 and 2).
cpu_mask() { # N [FIRST]
  local m="" i
  for ((i = 0; i < $1; i++)); do m="1$m"; done
  for ((i = 0; i < ${2:-0}; i++)); do m="${m}0"; done
  echo "$m"
}

# nginx as the plain reverse proxy: NGINX_WORKERS workers (default 1), one
# per CPU from TARGET_CPU on, upstream keepalive, no buffering, no access
# log.
write_nginx_conf() { # DIR PORT UPSTREAM_URL
  mkdir -p "$1/logs"
  local workers=${NGINX_WORKERS:-1}
  cat > "$1/nginx.conf" <<NGINX
worker_processes $workers;
worker_cpu_affinity $( [ "$workers" = 1 ] || echo auto ) $(cpu_mask "$workers" "${TARGET_CPU:-1}");
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  upstream up { server ${3#http://}; keepalive 256; }
  server {
    listen 127.0.0.1:$2 reuseport backlog=4096;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
}

# LAYOUT (split, the default, or shared; see bench/run.sh) -> TARGET_CPU,
# PG_CPU, exported for start_postgres and write_nginx_conf.
set_layout() {
  LAYOUT=${LAYOUT:-split}
  case $LAYOUT in
    split) TARGET_CPU=1 PG_CPU=0 ;;
    shared) TARGET_CPU=0 PG_CPU=1 ;;
    *) echo "LAYOUT must be split or shared, not '$LAYOUT'" >&2; exit 2 ;;
  esac
  export LAYOUT TARGET_CPU PG_CPU
}

# A scratch directory, and the processes the script starts, stopped on
# exit: background pids go to PIDS, PostgreSQL's stop command to PG_STOP.
start_scratch() {
  WORK=$(mktemp -d)
  PIDS=()
  PG_STOP=()
  trap stop_scratch EXIT
}
stop_scratch() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ ${#PG_STOP[@]} -eq 0 ] || "${PG_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

# The bench upstream (`fake-openai --bench`, extra arguments appended) on
# CPUs UPSTREAM_CPUS (default 0); sets UP to its URL.
start_upstream() {
  taskset -c "${UPSTREAM_CPUS:-0}" "$T/fake-openai" --bench --port 0 "$@" > "$WORK/up.out" & PIDS+=($!)
  UP=$(first_line "$WORK/up.out")
}

# RATE chat completions per second, open loop, for SECONDS, at URL (from
# CPU 0, 32 connections); prints oha_summary.py's one-line JSON.
load_at_rate() { # URL SECONDS
  local chat='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What are the opening hours on Saturday?"}]}'
  taskset -c 0 "$OHA" --no-tui --output-format json -z "${2}s" -q "$RATE" --latency-correction -c 32 -m POST \
    -H 'authorization: Bearer bench-key' -H 'content-type: application/json' -d "$chat" "$1/v1/chat/completions" \
    | python3 bench/oha_summary.py "$RATE" "$2"
}

# What most bench scripts start from: oha, a release build of the gateway
# and the fake upstream (T=target/release), a scratch directory and the
# bench upstream (UP).
start_bench() {
  ensure_oha
  cargo build --release -q -p palisade-gateway -p palisade-fake-upstreams
  T=target/release
  start_scratch
  start_upstream
}
