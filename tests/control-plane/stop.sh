#!/usr/bin/env bash
# stop.sh DIR: stops the control plane start.sh started in DIR (the API
# server first, then etcd); its state and logs stay in DIR. Each gets a
# second to exit on SIGTERM, then SIGKILL: test state is thrown away, and
# the API server otherwise waits out its graceful shutdown (~4 s, longer
# with a client's watch still open).
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: stop.sh DIR" >&2; exit 2; }
dir="$1"
# Gone, or a zombie waiting for init to reap it (that can take a second or two).
alive() { local st; st="$(ps -o stat= -p "$1" 2>/dev/null)"; [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
stop() { # PIDFILE
  [ -f "$1" ] || return 0
  local pid; pid="$(cat "$1")"
  rm -f "$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 10); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  # A process killed in the middle of disk I/O dies when the I/O returns.
  for _ in $(seq 1 300); do alive "$pid" || return 0; sleep 0.1; done
  echo "stop.sh: process $pid still running 30 s after SIGKILL" >&2
}
# The watchdog first, unless it is what runs us: it stops the control
# plane itself once apiserver.pid is gone, and a second stop.sh running
# beside this one would find etcd.pid removed and return while etcd was
# still dying (CI, 2026-12-05: "outlived its control plane"). The watchdog
# runs us as its last command, which bash execs: then we *are* the
# watchdog's process ($$), not its child.
if [ -f "$dir/watchdog.pid" ]; then
  wd="$(cat "$dir/watchdog.pid")"; rm -f "$dir/watchdog.pid"
  [ "$wd" != "$PPID" ] && [ "$wd" != "$$" ] && kill "$wd" 2>/dev/null
fi
stop "$dir/apiserver.pid"
stop "$dir/etcd.pid"
exit 0
