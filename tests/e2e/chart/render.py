"""Render and lint charts/palisade with the real Helm v4 library
(helm-python-sdk). Prints one JSON object: {"lint": report, "cases":
{case: {template path: manifest}}}; run by tests/e2e/tests/chart.rs."""
import json
import sys

import helm_python as helm

chart_dir = sys.argv[1]
chart = helm.Chart.load(chart_dir)
cases = {
    "default": None,
    "no_mutating_policy": {"approvals": {"admission": {"stampDecider": False}}},
    "no_admission": {"approvals": {"admission": {"enabled": False}}},
}
out = {"lint": helm.lint(chart_dir, strict=True), "cases": {}}
for case, values in cases.items():
    out["cases"][case] = chart.render(values, name="palisade", namespace="palisade-system", is_install=True)
print(json.dumps(out))
