#!/usr/bin/env bash
# namespace.sh DIR NS: creates namespace NS in the control plane started in
# DIR (if missing) and gives the test users their rights there: the editor
# the palisade-test-editor ClusterRole, the approver palisade-approver.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: namespace.sh DIR NAMESPACE" >&2; exit 2; }
dir="$1"; ns="$2"
# shellcheck disable=SC1091
. "$dir/env"
"$KUBECTL" --kubeconfig "$dir/admin.kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: palisade-test-editors, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: palisade-test-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "palisade-test:editors"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: palisade-test-approvers, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: palisade-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "palisade-test:approvers"}]
EOF
