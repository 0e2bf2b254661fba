#!/usr/bin/env bash
# Palisade on kind, end to end: cluster, images, chart, example policy, and
# a smoke check a person could do by hand. Needs docker (or podman), kind,
# kubectl, helm and curl. It cannot run on the development machines (no
# container engine there); it is written to the same standard as the tested
# code and every step says what it checks.
#
#   bash tests/kind/up.sh          # create + install + smoke check
#   bash tests/kind/up.sh smoke    # smoke check an existing install
#   bash tests/kind/up.sh down     # delete the cluster
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=palisade
NS=palisade-system
MODEL=${MODEL:-qwen2.5:0.5b}
TAG=dev

need() { command -v "$1" >/dev/null || { echo "up.sh: $1 is required ($2)" >&2; exit 1; }; }
step() { printf '\n== %s\n' "$*"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }

down() { kind delete cluster --name "$CLUSTER"; }

up() {
  need kind "https://kind.sigs.k8s.io"; need docker "or alias docker=podman"; need kubectl ""; need helm "https://helm.sh"
  step "cluster (kind-config.yaml)"
  kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config kind-config.yaml --wait 120s
  kubectl config use-context "kind-$CLUSTER" >/dev/null

  step "images"
  for bin in gateway operator; do
    docker build -f "deploy/Dockerfile.$bin" -t "palisade-$bin:$TAG" .
    kind load docker-image --name "$CLUSTER" "palisade-$bin:$TAG"
  done

  step "chart (bundled PostgreSQL and Ollama for the demo)"
  api_ip=$(kubectl get endpoints kubernetes -o jsonpath='{.subsets[0].addresses[0].ip}')
  api_port=$(kubectl get endpoints kubernetes -o jsonpath='{.subsets[0].ports[0].port}')
  helm upgrade --install palisade charts/palisade -n "$NS" --create-namespace --wait --timeout 10m \
    --set operator.image.repository=palisade-operator --set operator.image.tag="$TAG" --set operator.image.pullPolicy=Never \
    --set gateway.image.repository=palisade-gateway --set gateway.image.tag="$TAG" --set gateway.image.pullPolicy=Never \
    --set postgres.bundled.enabled=true --set ollama.enabled=true \
    --set networkPolicy.apiServerCIDR="$api_ip/32" --set "networkPolicy.apiServerPorts={$api_port}"
  kubectl -n "$NS" exec deploy/palisade-ollama -- ollama pull "$MODEL"

  step "example policy (local provider = the bundled Ollama, model $MODEL)"
  kubectl get namespace clinic >/dev/null 2>&1 || kubectl create namespace clinic
  kubectl -n clinic get secret openai-credentials >/dev/null 2>&1 \
    || kubectl -n clinic create secret generic openai-credentials --from-literal=apiKey="${OPENAI_API_KEY:-sk-not-set}"
  # Only Secrets labelled palisade.dev/credentials=true may be a provider's credentials.
  kubectl -n clinic label --overwrite secret openai-credentials palisade.dev/credentials=true
  for sa in intake-agent scheduler-agent; do
    kubectl -n clinic get serviceaccount "$sa" >/dev/null 2>&1 || kubectl -n clinic create serviceaccount "$sa"
  done
  sed -e "s#http://ollama.ollama.svc:11434#http://palisade-ollama.$NS.svc:11434#" \
      -e "s#llama3.1:8b#$MODEL#g" -e "s#\"llama3.1\*\"#\"qwen*\", \"llama3.1*\"#" \
      examples/clinic-assistant.yaml | kubectl apply -f -
  kubectl -n clinic wait aipolicy/clinic-assistant --for=condition=Ready --timeout=60s
  smoke
}

smoke() {
  need curl ""
  step "smoke: port-forward the gateway"
  kubectl -n "$NS" port-forward svc/palisade-gateway 18080:8080 >/dev/null 2>&1 &
  pf=$!
  trap 'kill $pf 2>/dev/null || true' EXIT
  for _ in $(seq 50); do curl -fs localhost:18080/readyz >/dev/null && break; sleep 0.2; done
  curl -fs localhost:18080/readyz >/dev/null || fail "the gateway is not ready"
  token=$(kubectl -n clinic create token intake-agent)
  api() { curl -s -o /tmp/palisade-smoke.json -w '%{http_code}' -H "authorization: Bearer $token" -H 'content-type: application/json' "localhost:18080$1" -d "$2"; }

  step "smoke: a chat about a patient is answered by the local model"
  curl -s -D /tmp/palisade-smoke.headers -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
    localhost:18080/v1/chat/completions -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Summarise this patient's medication in one line.\"}]}"
  grep -qi '^x-palisade-provider: local' /tmp/palisade-smoke.headers || fail "not routed local: $(cat /tmp/palisade-smoke.headers)"
  grep -qi '^x-palisade-reasons: routing.keyword' /tmp/palisade-smoke.headers || fail "no routing.keyword reason"

  step "smoke: a denied tool"
  [ "$(api /v1/tool-calls '{"tool":"bulk_export","arguments":{}}')" = 403 ] || fail "bulk_export was not denied"
  grep -q 'tool.denied_by_rule' /tmp/palisade-smoke.json || fail "no reason code: $(cat /tmp/palisade-smoke.json)"

  step "smoke: an approval, decided with kubectl patch, used once"
  call='{"tool":"send_email","arguments":{"to":"dr@clinic.example"},"requestId":"smoke-'$RANDOM'"}'
  [ "$(api /v1/tool-calls "$call")" = 202 ] || fail "send_email was not held: $(cat /tmp/palisade-smoke.json)"
  name=$(sed -E 's/.*"name":"([^"]+)".*/\1/' /tmp/palisade-smoke.json)
  kubectl get approvals -n clinic
  kubectl patch approval "$name" -n clinic --type=merge -p '{"spec":{"decision":"Approved","reason":"smoke test"}}'
  [ "$(kubectl get approval "$name" -n clinic -o jsonpath='{.spec.decidedBy}')" = "kubernetes-admin" ] \
    || fail "decidedBy was not stamped from the request's user"
  retry=$(echo "$call" | sed "s/}\$/,\"approval\":\"$name\"}/")
  [ "$(api /v1/tool-calls "$retry")" = 200 ] || fail "the approved call was refused: $(cat /tmp/palisade-smoke.json)"
  [ "$(api /v1/tool-calls "$retry")" = 403 ] || fail "the approval was usable twice"

  step "smoke: kill switch"
  kubectl patch aipolicy clinic-assistant -n clinic --type=merge -p '{"spec":{"suspend":true}}'
  refused=
  for _ in $(seq 20); do
    [ "$(api /v1/tool-calls '{"tool":"calendar_read","arguments":{}}')" = 403 ] && grep -q kill_switch.policy /tmp/palisade-smoke.json && { refused=1; break; }
    sleep 0.1
  done
  kubectl patch aipolicy clinic-assistant -n clinic --type=merge -p '{"spec":{"suspend":false}}'
  [ -n "$refused" ] || fail "the kill switch did not stop the agent within 2 s"

  step "smoke: passed"
}

case "${1:-up}" in
  up) up ;;
  smoke) smoke ;;
  down) down ;;
  *) echo "usage: $0 [up|smoke|down]" >&2; exit 2 ;;
esac
