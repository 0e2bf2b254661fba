"""Summarises `oha --output-format json` for bench/run.sh.

    oha ... | python3 oha_summary.py OFFERED SECONDS   -> one JSON line
    python3 oha_summary.py --ok SUMMARY_JSON           -> exit 0 if the step passed

A step passes when at least 99% of the offered rate was answered with 200,
nothing failed, and p99 < 10 ms. OFFERED 0 means closed loop (concurrency 1).
"""
import json
import sys

if sys.argv[1] == "--ok":
    r = json.loads(sys.argv[2])
    passed = r["errors"] == 0 and r["p99_ms"] < 10 and r["achieved"] >= 0.99 * r["offered"]
    sys.exit(0 if passed else 1)

offered, seconds = float(sys.argv[1]), float(sys.argv[2])
o = json.load(sys.stdin)
codes = {str(k): v for k, v in (o.get("statusCodeDistribution") or {}).items()}
ok = codes.get("200", 0)
# Requests still in flight when the run ends are cut off by oha; they are
# counted only through the achieved rate, not as errors.
errors = {k: v for k, v in (o.get("errorDistribution") or {}).items() if "deadline" not in k}
pct = o.get("latencyPercentiles") or {}
ms = lambda k: round((pct.get(k) or float("nan")) * 1000, 3)
print(json.dumps({
    "offered": offered,
    "achieved": round(ok / seconds, 1),
    "p50_ms": ms("p50"),
    "p99_ms": ms("p99"),
    "p999_ms": ms("p99.9"),
    "errors": sum(v for k, v in codes.items() if k != "200") + sum(errors.values()),
    "error_kinds": sorted(set(k for k in codes if k != "200") | set(errors)),
}))
