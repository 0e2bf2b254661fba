"""Summarises bench/scale.sh's results (see there).

    python3 bench/scale_report.py RESULTS.jsonl

(The first line of RESULTS names the machine, the clock tick the CPU
times are counted in, and each step's length.)

Per core count: each contender's median peak over the rounds, CPU per
request (and the kernel's part of it), the median round-by-round ratio to nginx (per core ÷ nginx,
target ≥ 0.8) and peak at N ÷ (N × peak at 1 core) (scaling, target
≥ 0.8), and requests per CPU-second ÷ nginx's. Exit status 0: the
report is informational.
"""
import json
import os
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
machine = next(r["machine"] for r in rows if "machine" in r)
# Files written before the machine line carried them: this machine's
# tick, and the step length scale.sh ran with (5 s by default).
hz = int(machine.get("clk_tck", os.sysconf("SC_CLK_TCK")))
secs = float(machine.get("secs", 5))
steps = [r for r in rows if "cores" in r]
names = {
    "nginx": "nginx",
    "off": "Palisade --no-audit",
    "pg": "Palisade, audit → PostgreSQL",
    "sqlite": "Palisade, audit → SQLite",
    "off-old": "GW_OLD --no-audit",
    "pg-old": "GW_OLD, audit → PostgreSQL",
    "sqlite-old": "GW_OLD, audit → SQLite",
}
by = {}
for r in steps:
    by.setdefault((r["cores"], r["variant"]), []).append(r)
cores = sorted({r["cores"] for r in steps})


def peak(n, v):
    return statistics.median(r["result"]["achieved"] for r in by[(n, v)])


def vs_nginx(n, v):
    pairs = zip(by[(n, v)], by[(n, "nginx")])
    return statistics.median(
        a["result"]["achieved"] / b["result"]["achieved"] for a, b in pairs if b["result"]["achieved"]
    )


def cpu_us(n, v, key="cpu_ticks"):
    return statistics.median(
        r[key] / hz / (r["result"]["achieved"] * secs) * 1e6 for r in by[(n, v)] if r["result"]["achieved"]
    )


def sys_us(n, v):
    """The kernel's part of cpu_us; files written before it was recorded
    have none."""
    if any("sys_ticks" not in r for r in by[(n, v)]):
        return "—"
    return f"{cpu_us(n, v, 'sys_ticks'):.1f}"


print(f"\nmachine: {machine['cpus']} CPUs, {machine['cpu']}, kernel {machine['kernel']}, build {machine['build']}; load on CPUs {machine['load_cpus']}")
print("\n| cores | contender | peak req/s (median) | CPU µs/request | of which in the kernel | ÷ nginx (median of rounds) | per CPU-second ÷ nginx | scaling: peak ÷ (N × 1-core peak) |")
print("|---|---|---|---|---|---|---|---|")
for n in cores:
    for v in names:
        if (n, v) not in by:
            continue
        ratio = "—" if v == "nginx" else f"{vs_nginx(n, v):.2f}×"
        per_cpu = "—" if v == "nginx" else f"{cpu_us(n, 'nginx') / cpu_us(n, v):.2f}×"
        scale = "—" if n == 1 or (1, v) not in by else f"{peak(n, v) / (n * peak(1, v)):.2f}"
        errors = sum(r["result"]["errors"] for r in by[(n, v)])
        note = f" ({errors} errors)" if errors else ""
        print(f"| {n} | {names[v]} | {peak(n, v):,.0f}{note} | {cpu_us(n, v):.1f} | {sys_us(n, v)} | {ratio} | {per_cpu} | {scale} |")
if cores == [1]:
    print(f"\nscaling not measured: {machine['cpus']} CPUs leave room for 1 target core beside the load (needs ≥ 4 CPUs for 2 cores)")
