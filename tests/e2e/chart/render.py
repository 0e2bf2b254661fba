"""Render and lint charts/palisade with the real Helm v4 library
(helm-python-sdk). Prints one JSON object: {"lint": report, "cases":
{case: {template path: manifest}}, "refused": {case: message}}; run by
tests/e2e/tests/chart.rs."""
import json
import sys

import glob
import os

import helm_python as helm
import kubernetes_validate
import yaml

KUBERNETES = "1.34.0"
# Kinds whose schemas are not Kubernetes' own (the Prometheus Operator's).
FOREIGN = {"ServiceMonitor"}


def validate(manifests):
    """Every built-in object against the Kubernetes 1.34 schemas (strict:
    unknown fields are errors). Returns the problems found."""
    problems = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc or doc.get("kind") in FOREIGN:
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{path}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{path}: no Kubernetes schema for {doc['kind']} {doc['apiVersion']}: {e}")
    return problems

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
out = {"lint": helm.lint(chart_dir, strict=True), "cases": {}, "refused": {}, "invalid": {}}
for case, values in cases.items():
    out["cases"][case] = chart.render(values, name="palisade", namespace="palisade-system", is_install=True)
    out["invalid"][case] = validate(out["cases"][case])
crds = {path: open(path).read() for path in sorted(glob.glob(os.path.join(chart_dir, "crds", "*.yaml")))}
out["invalid"]["crds"] = validate(crds)
for case, values in wrong.items():
    try:
        chart.render(values, name="palisade", namespace="palisade-system", is_install=True)
        out["refused"][case] = None
    except helm.HelmError as e:
        out["refused"][case] = str(e)
print(json.dumps(out))
