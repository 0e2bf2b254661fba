#!/usr/bin/env bash
# start.sh DIR: a real Kubernetes control plane for tests and for trying
# Palisade by hand — etcd and kube-apiserver built from the Go module proxy
# (build.sh), on loopback, on free ports, with all their state in DIR.
#
# Returns once /readyz is ok, having written:
#   DIR/admin.kubeconfig     system:masters
#   DIR/approver.kubeconfig  user "approver", bound to the palisade-approver ClusterRole
#   DIR/editor.kubeconfig    user "editor": edits palisade.dev resources, no `approve`
#   DIR/agent.kubeconfig     user "agent": no rights of its own
#   DIR/env                  API_URL=, CA_FILE=, ETCD_URL=, BIN_DIR=, KUBECTL= (shell syntax)
#   DIR/audit.log            the API server's audit log (one JSON line per request)
# The approver and the editor get those rights in the namespaces named by
# PALISADE_TEST_NAMESPACES (default "clinic"; more with namespace.sh DIR NS).
#
# The API server runs as a production cluster's does: RBAC, the
# ServiceAccount token issuer with keys of its own (kubectl create token,
# TokenReview), ValidatingAdmissionPolicy and MutatingAdmissionPolicy. No
# kubelet, scheduler or controller-manager: nothing runs Pods.
#
# Environment:
#   PALISADE_APISERVER_ARGS    extra kube-apiserver flags (e.g. a --runtime-config
#                              that turns an API off)
#   PALISADE_MUTATING_ADMISSION_POLICY=off  serve no MutatingAdmissionPolicy API
#                              (as most clusters before 1.36): the API and its
#                              admission plugin are both turned off
#   PALISADE_CONTROL_PLANE_OWNER  a PID: when it exits, the control plane stops
#                              (tests set it, so nothing outlives a test run)
# On any failure it stops what it started and prints the logs' last lines.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 1 ] || { echo "usage: start.sh DIR" >&2; exit 2; }
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
if [ -f "$dir/apiserver.pid" ] && kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then
  echo "start.sh: a control plane already runs in $dir (stop it with stop.sh $dir)" >&2
  exit 1
fi

bin="$(bash "$here/build.sh")"

fail() {
  echo "start.sh: $*" >&2
  for log in etcd.log apiserver.log; do
    [ -f "$dir/$log" ] && { echo "--- last lines of $dir/$log" >&2; tail -n 25 "$dir/$log" >&2; }
  done
  bash "$here/stop.sh" "$dir" >&2 || true
  exit 1
}
trap 'fail "failed at line $LINENO"' ERR

# Three free loopback ports: etcd's client and peer, and the API server's.
read -r etcd_port peer_port api_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)

# --- PKI: a CA, the API server's serving certificate, the ServiceAccount
# token signing key. Static bearer tokens identify the test users.
pki="$dir/pki"
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=palisade-test-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$pki/san.ext"
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 30 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

token() { openssl rand -hex 24; }
admin_token="$(token)"; approver_token="$(token)"; editor_token="$(token)"; agent_token="$(token)"
cat >"$pki/tokens.csv" <<EOF
$admin_token,palisade-test-admin,uid-admin,"system:masters"
$approver_token,approver,uid-approver,"palisade-test:approvers"
$editor_token,editor,uid-editor,"palisade-test:editors"
$agent_token,agent,uid-agent,"palisade-test:agents"
EOF
chmod 600 "$pki"/*.key "$pki/tokens.csv"

cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
EOF

# --- etcd. --unsafe-no-fsync: test state is thrown away, and fsync on a
# shared disk makes every write tens of milliseconds.
"$bin/etcd" --name default --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" \
  --unsafe-no-fsync --log-level warn >"$dir/etcd.log" 2>&1 </dev/null &
echo $! >"$dir/etcd.pid"

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
  kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null || fail "etcd exited"
  sleep 0.1
done
curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null || fail "etcd did not become healthy in 10 s"

# --- kube-apiserver.
plugins=NamespaceLifecycle,ServiceAccount,ValidatingAdmissionPolicy,MutatingAdmissionPolicy
runtime_config=()
case "${PALISADE_MUTATING_ADMISSION_POLICY:-on}" in
  on) ;;
  off)
    plugins=NamespaceLifecycle,ServiceAccount,ValidatingAdmissionPolicy
    runtime_config=(--disable-admission-plugins MutatingAdmissionPolicy --runtime-config "admissionregistration.k8s.io/v1/mutatingadmissionpolicies=false,admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings=false")
    ;;
  *) echo "start.sh: PALISADE_MUTATING_ADMISSION_POLICY must be on or off" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
"$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --cert-dir "$pki" \
  --authorization-mode RBAC \
  --token-auth-file "$pki/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --enable-admission-plugins "$plugins" \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
  --endpoint-reconciler-type none \
  "${runtime_config[@]}" ${PALISADE_APISERVER_ARGS:-} >"$dir/apiserver.log" 2>&1 </dev/null &
echo $! >"$dir/apiserver.pid"

api="https://127.0.0.1:$api_port"
ready=
for _ in $(seq 1 600); do
  if [ "$(curl -s --cacert "$pki/ca.crt" -H "Authorization: Bearer $admin_token" "$api/readyz" 2>/dev/null)" = ok ]; then
    ready=1; break
  fi
  kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null || fail "kube-apiserver exited"
  sleep 0.1
done
[ -n "$ready" ] || fail "kube-apiserver was not ready within 60 s"

kubeconfig() { # NAME TOKEN
  cat >"$dir/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: palisade-test
    cluster:
      server: $api
      certificate-authority: $pki/ca.crt
users:
  - name: $1
    user:
      token: $2
contexts:
  - name: $1
    context: {cluster: palisade-test, user: $1}
current-context: $1
EOF
  chmod 600 "$dir/$1.kubeconfig"
}
kubeconfig admin "$admin_token"
kubeconfig approver "$approver_token"
kubeconfig editor "$editor_token"
kubeconfig agent "$agent_token"

cat >"$dir/env" <<EOF
API_URL=$api
CA_FILE=$pki/ca.crt
ETCD_URL=http://127.0.0.1:$etcd_port
BIN_DIR=$bin
KUBECTL=$bin/kubectl
EOF

# What the test users may do: the editor edits palisade.dev resources (what
# the `edit` ClusterRole holds once the palisade-edit role is aggregated into
# it — aggregation is the controller-manager's job, which this control plane
# lacks) but has no `approve`; the approver holds the chart's
# palisade-approver role (bound here by name; the chart creates it).
"$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: palisade-test-editor
rules:
  - apiGroups: ["palisade.dev"]
    resources: ["aipolicies", "toolgrants", "approvals"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
  - apiGroups: [""]
    resources: ["secrets", "configmaps", "serviceaccounts"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
EOF
for ns in ${PALISADE_TEST_NAMESPACES-clinic}; do
  bash "$here/namespace.sh" "$dir" "$ns"
done

# Nothing outlives its owner: a watchdog stops the control plane when the
# owning process (a test binary) exits, however it exits.
if [ -n "${PALISADE_CONTROL_PLANE_OWNER:-}" ]; then
  owner="$PALISADE_CONTROL_PLANE_OWNER"
  setsid bash -c 'while kill -0 '"$owner"' 2>/dev/null && [ -f "$1/apiserver.pid" ]; do sleep 0.5; done; bash "$2/stop.sh" "$1"' \
    watchdog "$dir" "$here" >/dev/null 2>&1 </dev/null &
  echo $! >"$dir/watchdog.pid"
fi
trap - ERR
echo "$api"
