"""Render and lint charts/palisade with the real Helm v4 library
(helm-python-sdk). Prints one JSON object: {"lint": report, "cases":
{case: {template path: manifest}}, "refused": {case: message}, "invalid":
{case: [problem]}}; run by tests/e2e/tests/chart.rs.

A case may say which API versions the cluster serves, as `helm install`
learns them from the API server's discovery (and `helm template
--api-versions` takes them): the chart renders some objects only where
their API is served. Without, Helm's built-in capabilities apply, as in
`helm template` or `helm lint` with no cluster."""
import json
import sys

import glob
import os

import helm_python as helm
from helm_python import _native
import kubernetes_validate
import yaml

KUBERNETES = "1.37.0"
# Kinds whose schemas are not Kubernetes' own (the Prometheus Operator's).
FOREIGN = {"ServiceMonitor", "PrometheusRule", "HTTPRoute", "AIPolicy"}

# What `helm install` sees in discovery on clusters that serve
# MutatingAdmissionPolicy: "group/version/Kind" for each served kind.
MAP_V1 = [
    "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
    "admissionregistration.k8s.io/v1/MutatingAdmissionPolicyBinding",
]
MAP_V1BETA1 = [
    "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy",
    "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicyBinding",
]


def validate(manifests):
    """Every built-in object against the Kubernetes 1.37 schemas (strict:
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


def render(chart, values, api_versions=None, kube_version=None):
    """Chart.render, plus what helm-python-sdk's wrapper does not pass on
    but its library's render options take (`api_versions`, `kube_version`:
    helm template's --api-versions and --kube-version)."""
    opts = {"name": "palisade", "namespace": "palisade-system", "is_install": True}
    if api_versions is not None:
        opts["api_versions"] = api_versions
    if kube_version is not None:
        opts["kube_version"] = kube_version
    rendered = _native.call_string(
        "helm_render", chart._raw(), None if values is None else json.dumps(values), json.dumps(opts)
    )
    return json.loads(rendered)


if KUBERNETES.rsplit(".", 1)[0] not in {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}:
    sys.exit(f"kubernetes-validate {kubernetes_validate.__version__} has no Kubernetes {KUBERNETES} schemas: "
             "delete the helm-venv under target/ so that it is recreated with a newer one")

chart_dir = sys.argv[1]
chart = helm.Chart.load(chart_dir)
# case: (values, served API versions, Kubernetes version); None: Helm's defaults.
cases = {
    "default": (None, None, None),
    "mutating_v1": (None, MAP_V1 + MAP_V1BETA1, "v1.37.2"),
    "mutating_v1beta1": (None, MAP_V1BETA1, "v1.34.0"),
    "mutating_v1beta1_required": ({"approvals": {"admission": {"stampDecider": True}}}, MAP_V1BETA1, "v1.34.0"),
    "no_mutating_policy": ({"approvals": {"admission": {"stampDecider": False}}}, MAP_V1, "v1.37.2"),
    "no_admission": ({"approvals": {"admission": {"enabled": False}}}, MAP_V1, "v1.37.2"),
    "no_guards": (
        {"gateway": {"leaseGuard": {"enabled": False}}, "rbac": {"aggregateToDefaultRoles": False},
         "networkPolicy": {"apiServerPorts": [6443]}},
        None,
        None,
    ),
    "everything": (
        {
            "postgres": {"bundled": {"enabled": True}},
            "ollama": {"enabled": True},
            "metrics": {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
            "gateway": {"autoscaling": {"enabled": True}},
            "operator": {"watchNamespaces": ["clinic", "billing"], "replicas": 1},
            "providers": {"allowedBaseUrls": ["https://llm.corp.example", "http://*.svc"], "allowPlaintextCredentials": True},
        },
        MAP_V1,
        "v1.37.2",
    ),
    "approval_quota_namespaces": (
        {"approvals": {"quota": {"namespaces": ["team-a", "team-b"], "maxApprovals": 50}},
         "operator": {"watchNamespaces": ["clinic"]}},
        None,
        None,
    ),
    "no_approval_quota": (
        {"approvals": {"quota": {"enabled": False}}, "operator": {"watchNamespaces": ["clinic"]}},
        None,
        None,
    ),
    "watching_the_release_namespace": (
        {"operator": {"watchNamespaces": ["palisade-system", "clinic"]}},
        None,
        None,
    ),
    "gateway_tls_and_token_audience": (
        {"gateway": {"tls": {"enabled": True, "secretName": "palisade-gateway-tls"},
                     "tokenReview": {"audiences": ["palisade"], "perSecond": 5, "burst": 10},
                     "maxConnections": 300, "maxInFlightBodyBytes": 16777216}},
        None,
        None,
    ),
    "tool_volumes": (
        {"gateway": {"toolVolumes": [
            {"name": "clinic-data", "mountPath": "/var/lib/palisade/tools/clinic",
             "volume": {"persistentVolumeClaim": {"claimName": "clinic-data"}}},
            {"name": "notes", "mountPath": "/var/lib/palisade/tools/notes", "readOnly": False,
             "volume": {"emptyDir": {"sizeLimit": "1Gi"}}},
        ]}},
        None,
        None,
    ),
    # What the e2e harness runs (tests/e2e/src/lib.rs FAKE_PROVIDER_EGRESS):
    # its helm test hooks are applied there (tests/helm_test.rs).
    "as_the_harness_runs": (
        {"providers": {"allowedBaseUrls": ["http://127.0.0.1"], "allowPlaintextCredentials": True}},
        None,
        None,
    ),
    "fits_real_clusters": (
        {
            "imagePullSecrets": [{"name": "regcred"}],
            "gateway": {
                "nodeSelector": {"pool": "gateways"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ai", "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                     "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}],
                "priorityClassName": "platform-critical",
                "podAnnotations": {"example.com/team": "platform"},
                "podLabels": {"team": "platform"},
                "extraEnv": [{"name": "RUST_LOG", "value": "info,palisade=debug"}],
                "extraArgs": ["--token-review-burst=80"],
                "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/palisade"}},
                "metricsPort": 9100,
                "auditorToken": {"secretName": "palisade-auditor"},
                "console": {"enabled": True},
                "ingress": {"enabled": True, "className": "nginx", "hosts": ["palisade.example.com"],
                            "tls": [{"secretName": "palisade-tls", "hosts": ["palisade.example.com"]}]},
                "httpRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
                              "hostnames": ["palisade.example.com"]},
            },
            "operator": {
                "nodeSelector": {"pool": "system"},
                "priorityClassName": "platform-critical",
                "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "palisade@p.iam.gserviceaccount.com"}},
                "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
            },
            "postgres": {"bundled": {"enabled": True}},
            "metrics": {"serviceMonitor": {"enabled": True},
                        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "denialBurst": 20}},
        },
        None,
        None,
    ),
}
wrong = {
    "replicas_not_a_number": ({"gateway": {"replicas": "two"}}, None),
    "misspelt_key": ({"operator": {"replicaz": 2}}, None),
    "cidr_without_prefix": ({"networkPolicy": {"apiServerCIDR": "10.0.0.1"}}, None),
    "bad_retention": ({"approvals": {"retention": "one day"}}, None),
    "approval_quota_of_nothing": ({"approvals": {"quota": {"maxApprovals": 0}}}, None),
    "no_audit_database": ({"postgres": {"external": {"secretName": ""}}}, None),
    "stamp_decider_required_without_the_api": ({"approvals": {"admission": {"stampDecider": True}}}, None),
    "stamp_decider_not_auto_or_boolean": ({"approvals": {"admission": {"stampDecider": "yes"}}}, MAP_V1),
    "old_api_server_port": ({"networkPolicy": {"apiServerPort": 443}}, None),
    "no_api_server_ports": ({"networkPolicy": {"apiServerPorts": []}}, None),
    "api_server_port_out_of_range": ({"networkPolicy": {"apiServerPorts": [443, 70000]}}, None),
    "tls_without_a_secret": ({"gateway": {"tls": {"enabled": True}}}, None),
    "body_budget_below_one_body": ({"gateway": {"maxInFlightBodyBytes": 65536}}, None),
    "token_audience_with_a_comma": ({"gateway": {"tokenReview": {"audiences": ["a,b"]}}}, None),
    "provider_url_without_scheme": ({"providers": {"allowedBaseUrls": ["api.openai.com"]}}, None),
    "tool_volume_without_a_mount_path": (
        {"gateway": {"toolVolumes": [{"name": "d", "volume": {"emptyDir": {}}}]}}, None),
    "tool_volume_over_the_spool": (
        {"gateway": {"toolVolumes": [{"name": "d", "mountPath": "/var/spool/palisade/d", "volume": {"emptyDir": {}}}]}}, None),
    "tool_volume_with_two_sources": (
        {"gateway": {"toolVolumes": [{"name": "d", "mountPath": "/data", "volume": {"emptyDir": {}, "hostPath": {"path": "/"}}}]}}, None),
    "pod_label_of_the_chart": ({"gateway": {"podLabels": {"app.kubernetes.io/component": "x"}}}, None),
    "ingress_without_hosts": ({"gateway": {"ingress": {"enabled": True}}}, None),
    "route_without_a_gateway": ({"gateway": {"httpRoute": {"enabled": True}}}, None),
    "metrics_on_the_api_port": ({"gateway": {"metricsPort": 8080}}, None),
    "extra_arg_not_a_flag": ({"operator": {"extraArgs": ["run"]}}, None),
    "misspelt_ingress_key": ({"gateway": {"ingress": {"host": "a.example"}}}, None),
    "pull_secret_as_a_string": ({"imagePullSecrets": ["regcred"]}, None),
    "console_without_an_auditor_token": ({"gateway": {"console": {"enabled": True}}}, None),
    "console_misspelt": ({"gateway": {"console": {"enable": True}}}, None),
}
out = {"lint": helm.lint(chart_dir, strict=True), "cases": {}, "refused": {}, "invalid": {}}
for case, (values, api_versions, kube_version) in cases.items():
    out["cases"][case] = render(chart, values, api_versions, kube_version)
    out["invalid"][case] = validate(out["cases"][case])
crds = {path: open(path).read() for path in sorted(glob.glob(os.path.join(chart_dir, "crds", "*.yaml")))}
out["invalid"]["crds"] = validate(crds)
for case, (values, api_versions) in wrong.items():
    try:
        render(chart, values, api_versions)
        out["refused"][case] = None
    except helm.HelmError as e:
        out["refused"][case] = str(e)
print(json.dumps(out))
