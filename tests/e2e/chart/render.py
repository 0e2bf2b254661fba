"""Render and lint charts/palisade with the real Helm v4 library
(helm-python-sdk). Prints one JSON object: {"lint": report, "cases":
{case: {template path: manifest}}, "refused": {case: message}}; run by
tests/e2e/tests/chart.rs."""
import json
import sys

import helm_python as helm

chart_dir = sys.argv[1]
chart = helm.Chart.load(chart_dir)
cases = {
    "default": None,
    "no_mutating_policy": {"approvals": {"admission": {"stampDecider": False}}},
    "no_admission": {"approvals": {"admission": {"enabled": False}}},
    "everything": {
        "postgres": {"bundled": {"enabled": True}},
        "ollama": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
        "gateway": {"autoscaling": {"enabled": True}},
        "operator": {"watchNamespaces": ["clinic", "billing"], "replicas": 1},
    },
}
wrong = {
    "replicas_not_a_number": {"gateway": {"replicas": "two"}},
    "misspelt_key": {"operator": {"replicaz": 2}},
    "cidr_without_prefix": {"networkPolicy": {"apiServerCIDR": "10.0.0.1"}},
    "bad_retention": {"approvals": {"retention": "one day"}},
    "no_audit_database": {"postgres": {"external": {"secretName": ""}}},
}
out = {"lint": helm.lint(chart_dir, strict=True), "cases": {}, "refused": {}}
for case, values in cases.items():
    out["cases"][case] = chart.render(values, name="palisade", namespace="palisade-system", is_install=True)
for case, values in wrong.items():
    try:
        chart.render(values, name="palisade", namespace="palisade-system", is_install=True)
        out["refused"][case] = None
    except helm.HelmError as e:
        out["refused"][case] = str(e)
print(json.dumps(out))
