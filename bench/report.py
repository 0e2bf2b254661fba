"""Turns bench/out/results.jsonl (written by bench/run.sh) into the
Markdown tables of docs/benchmarks.md (and of bench/results/DIARY.md),
and checks the targets.

    python3 bench/report.py bench/out/results.jsonl
"""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
machine = next((r["machine"] for r in rows if "machine" in r), {})
by = {}
for r in rows:
    if "target" in r:
        by.setdefault(r["target"], []).append(r)
targets = [t for t in ["direct", "nginx", "palisade", "palisade-off", "litellm"] if t in by]
names = {
    "direct": "direct (no proxy)",
    "nginx": "nginx, 1 worker",
    "palisade": "Palisade, audit → PostgreSQL",
    "palisade-off": "Palisade, --no-audit",
    "litellm": "LiteLLM proxy, 1 worker",
}


def step(target, kind, rate=None):
    for r in by.get(target, []):
        if r["step"] == kind and (rate is None or r.get("rate") == rate):
            return r
    return None


def lat(target, kind, rate=None):
    r = step(target, kind, rate)
    return r["result"] if r else None


def valid(kind, rate):
    """Direct reached 99% of the offered rate (rates only)."""
    d = lat("direct", kind, rate)
    if d is None or kind in ("c1",):
        return True
    achieved = d.get("achieved", d.get("achieved_rate", 0))
    return achieved >= 0.99 * rate


def fmt(x):
    return "—" if x is None else f"{x:.2f}"


def pair(res, base=None):
    if res is None:
        return "—"
    p50, p99 = res["p50_ms"], res["p99_ms"]
    failed = res.get("errors", 0) > 0 or (
        res.get("offered") and res.get("achieved", 0) < 0.99 * res["offered"]
    )
    text = f"{p50:.2f} / {p99:.2f}"
    if base is not None:
        text += f" (+{p50 - base['p50_ms']:.2f} / +{p99 - base['p99_ms']:.2f})"
    if failed:
        achieved = res.get("achieved", res.get("achieved_rate", 0))
        text += f" ✗ {achieved:.0f}/s, {res.get('errors', 0)} errors"
    return text


out = []
if machine:
    out.append(
        f"Machine: {machine.get('cpus')} vCPU ({machine.get('cpu')}), kernel {machine.get('kernel')}; "
        f"oha {machine.get('oha')}, nginx {machine.get('nginx')}, LiteLLM {machine.get('litellm') or '—'}; "
        f"{machine.get('duration_s')} s per rate step, 5 s per ladder step; "
        f"layout {machine.get('layout', 'split')} (bench/run.sh: LAYOUT)."
    )
    out.append("")

out.append("Latency p50 / p99 in ms (added over direct in brackets), instant upstream answer:")
out.append("")
cols = [("c1", None, "concurrency 1"), ("rate", 100, "100 req/s"), ("rate", 500, "500 req/s"), ("rate", 1000, "1,000 req/s")]
out.append("| target | " + " | ".join(c[2] + ("" if valid(c[0], c[1]) else " (invalid: direct < 99%)") for c in cols) + " |")
out.append("|---" * (len(cols) + 1) + "|")
for t in targets:
    cells = []
    for kind, rate, _ in cols:
        base = lat("direct", kind, rate) if t != "direct" else None
        cells.append(pair(lat(t, kind, rate), base))
    out.append(f"| {names[t]} | " + " | ".join(cells) + " |")
out.append("")

med = statistics.median


def paired_rounds(kind):
    """Rounds of a step repeated alternately on direct and the proxy."""
    return {t: [r for r in by[t] if r["step"] == kind] for t in targets}


def added(rounds, key):
    """Per round: the proxy's figure minus direct's in the same round."""
    return [r["result"][key] - r["direct"][key] for r in rounds]


def keys(kind):
    """The latency figures a paired step is judged on: for time to first
    token, from each request's actual send when loadgen reports it (its
    timer's up-to-1 ms lateness left out, see bench/src/main.rs)."""
    first = next((r for t in targets for r in by[t] if r["step"] == kind), None)
    if kind == "ttft_paired" and first and "sent_p50_ms" in first["result"]:
        return "sent_p50_ms", "sent_p99_ms"
    return "p50_ms", "p99_ms"


def paired_table(kind, title):
    rounds_by = paired_rounds(kind)
    if not any(rounds_by.values()):
        return
    n = max(len(v) for v in rounds_by.values())
    k50, k99 = keys(kind)
    if k50.startswith("sent_"):
        title += ", timed from each request's send"
    out.append(f"{title} ({n} rounds, alternating direct and the proxy); added = proxy − direct of the same round:")
    out.append("")
    out.append("| target | added p50 per round (ms) | added p99 per round (ms) | median added p50 / p99 (ms) |")
    out.append("|---|---|---|---|")
    for t in targets:
        rounds = rounds_by[t]
        if not rounds:
            continue
        d50, d99 = added(rounds, k50), added(rounds, k99)
        out.append(f"| {names[t]} | {' / '.join(f'{x:+.2f}' for x in d50)} | {' / '.join(f'{x:+.2f}' for x in d99)} | {med(d50):+.2f} / **{med(d99):+.2f}** |")
    out.append("")


paired_table("paired", "The 1,000 req/s step repeated")
paired_table("ttft_paired", "Time to first token (50 streams/s) repeated")

out.append("20 ms upstream answer, and time to first token of a stream (64 chunks 20 ms apart, 50 streams/s):")
out.append("")
out.append("| target | 20 ms answer, 100 req/s | 20 ms answer, 1,000 req/s | TTFT, 50 streams/s |")
out.append("|---|---|---|---|")
for t in targets:
    cells = []
    for kind, rate in [("slow", 100), ("slow", 1000), ("ttft", 50)]:
        base = lat("direct", kind, rate) if t != "direct" else None
        cells.append(pair(lat(t, kind, rate), base))
    out.append(f"| {names[t]} | " + " | ".join(cells) + " |")
out.append("")

out.append(
    "Cost and capacity (the proxy alone on one core):"
    if machine.get("layout", "split") == "split"
    else "Cost and capacity (the proxy on the load generator's core):"
)
out.append("")
out.append("| target | max req/s with p99 < 10 ms | peak req/s (64 connections, closed loop) | CPU-s per 1,000 req (at 1,000 req/s) | RSS idle MiB | RSS after load MiB |")
out.append("|---|---|---|---|---|---|")
summary = {}
for t in targets:
    s = step(t, "summary") or {}
    r1000 = step(t, "rate", 1000)
    ladder = [r for r in by[t] if r["step"] in ("ladder", "rate")]
    peak_rss = max((r.get("rss_kib", 0) for r in ladder), default=0)
    cpu = None
    if r1000 and t != "direct":
        achieved = r1000["result"]["achieved"] * float(machine.get("duration_s", 10))
        cpu = r1000["cpu_s"] / achieved * 1000 if achieved else None
    peak = (lat(t, "peak") or {}).get("achieved")
    summary[t] = {"max": s.get("max_rate_p99_under_10ms"), "peak": peak, "idle": s.get("idle_rss_kib", 0) / 1024, "cpu": cpu}
    cpu_text = "—" if cpu is None else f"{cpu:.3f}"
    max_text = "< 25" if s.get("max_rate_p99_under_10ms") == 0 else f"{s.get('max_rate_p99_under_10ms', 0):,}"
    out.append(
        f"| {names[t]} | {max_text} | {'—' if peak is None else f'{peak:,.0f}'} | {cpu_text} | "
        f"{s.get('idle_rss_kib', 0) / 1024:.1f} | {peak_rss / 1024:.1f} |"
    )
out.append("")

# Peak throughput side by side: round by round, each proxy's closed-loop
# peak and its ratio to nginx's in the same round.
peak_rounds = {t: {r["round"]: r for r in by[t] if r["step"] == "peak_paired"} for t in targets}
peak_ratio = {}
if peak_rounds.get("nginx"):
    n = len(peak_rounds["nginx"])
    out.append(f"Peak throughput (64 connections, closed loop, 5 s) again with the proxies up side by side, visited in turn ({n} rounds); ratio = proxy ÷ nginx in the same round:")
    out.append("")
    out.append("| target | peak req/s per round | CPU µs per request (median) | ratio to nginx per round | median ratio |")
    out.append("|---|---|---|---|---|")
    for t in targets:
        rounds = peak_rounds.get(t) or {}
        if not rounds:
            continue
        peaks = [rounds[k]["result"]["achieved"] for k in sorted(rounds)]
        cpu = med([r["cpu_s"] / (r["result"]["achieved"] * 5) * 1e6 for r in rounds.values() if r["result"]["achieved"]])
        ratios = [rounds[k]["result"]["achieved"] / peak_rounds["nginx"][k]["result"]["achieved"] for k in sorted(rounds) if k in peak_rounds["nginx"]]
        if t != "nginx":
            peak_ratio[t] = (med(ratios), len(ratios))
        out.append(
            f"| {names[t]} | {' / '.join(f'{p:,.0f}' for p in peaks)} | {cpu:.0f} | "
            + ("—" if t == "nginx" else " / ".join(f"{x:.2f}" for x in ratios))
            + " | " + ("—" if t == "nginx" else f"**{med(ratios):.2f}×**") + " |"
        )
    out.append("")

for r in rows:
    if "pg_audit_rows" in r:
        out.append(f"Audit rows in PostgreSQL after the run: {r['pg_audit_rows']:,}.")
        out.append("")

checks = []
for t in ["palisade", "palisade-off"]:
    rounds = paired_rounds("paired").get(t) or []
    if rounds:
        d99 = med(added(rounds, "p99_ms"))
        checks.append((f"{names[t]}: added p99 at 1,000 req/s ≤ 0.5 ms (median of {len(rounds)} paired rounds)", f"{d99:.2f} ms", d99 <= 0.5))
for t in ["palisade"]:
    rounds = paired_rounds("ttft_paired").get(t) or []
    for key in keys("ttft_paired"):
        if rounds:
            d = med(added(rounds, key))
            checks.append((f"{names[t]}: streamed TTFT added ≤ 0.5 ms, {key.replace('sent_', '')[:3]} (median of {len(rounds)} paired rounds)", f"{d:.2f} ms", d <= 0.5))
for peer, need in [("litellm", 10), ("nginx", 0.5)]:
    if "palisade" in summary and peer in summary and summary[peer]["peak"]:
        ratio = summary["palisade"]["peak"] / summary[peer]["peak"]
        checks.append((f"peak throughput ≥ {need}× {names[peer]}", f"{ratio:.2f}×", ratio >= need))
        if peer == "nginx" and "palisade" in peak_ratio:
            ratio, n = peak_ratio["palisade"]
            checks.append((f"peak throughput ≥ {need}× {names[peer]}, side by side (median of {n} rounds)", f"{ratio:.2f}×", ratio >= need))
        if summary[peer]["max"]:
            ratio = summary["palisade"]["max"] / summary[peer]["max"]
            checks.append((f"max rate with p99 < 10 ms ≥ {need}× {names[peer]}", f"{ratio:.2f}×", ratio >= need))
if "palisade" in summary:
    idle = summary["palisade"]["idle"]
    checks.append(("idle RSS ≤ 30 MB", f"{idle * 1.048576:.1f} MB", idle * 1.048576 <= 30))
if checks:
    out.append("| goal | measured | met |")
    out.append("|---|---|---|")
    for name, value, ok in checks:
        out.append(f"| {name} | {value} | {'yes' if ok else 'NO'} |")
print("\n".join(out))
