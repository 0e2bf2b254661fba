"""Install charts/palisade into an API server with the real Helm v4 library
(the install code path `helm install` runs; releases stored in Secrets, as
by default). Usage: install.py KUBECONFIG CHART_DIR NAMESPACE [VALUES_JSON];
prints the release as JSON; on failure, Helm's error on stderr and exit 1."""
import json
import sys

import helm_python as helm

kubeconfig, chart_dir, namespace = sys.argv[1:4]
values = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
try:
    with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
        release = cfg.install(chart_dir, "palisade", values, namespace=namespace, timeout=120)
except Exception as e:  # Helm's error, as `helm install` prints it
    print(f"Error: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(release, default=str))
