"""Install charts/palisade into an API server with the real Helm v4 library
(the install code path `helm install` runs). Release storage is in memory:
kube-sim speaks JSON only and Helm's Secret storage driver sends protobuf.
Usage: install.py KUBECONFIG CHART_DIR NAMESPACE; prints the release as JSON."""
import json
import sys

import helm_python as helm

kubeconfig, chart_dir, namespace = sys.argv[1:4]
# kube-sim serves no admissionregistration.k8s.io/v1beta1 (the mutating
# policy's API), so that optional part is off here.
values = {"approvals": {"admission": {"stampDecider": False}}}
with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace, storage_driver="memory") as cfg:
    release = cfg.install(chart_dir, "palisade", values, namespace=namespace, timeout=120)
print(json.dumps(release, default=str))
