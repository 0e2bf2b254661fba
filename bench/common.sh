# Shared by bench/run.sh and bench/profile.sh (sourced from the repository
# root): the load tool, waiting for a started process, the bench policy.

# oha from PATH, else installed once into target/bench-tools.
ensure_oha() {
  OHA=$(command -v oha || echo "$PWD/target/bench-tools/bin/oha")
  [ -x "$OHA" ] || cargo install -q --locked --root "$PWD/target/bench-tools" oha@1.16.0 --no-default-features --features rustls
}

# The first line a background process wrote to FILE (its URL); on timeout,
# shows ERRFILE and exits.
first_line() { # FILE [ERRFILE]
  for _ in $(seq 400); do [ -s "$1" ] && { head -n1 "$1"; return; }; sleep 0.05; done
  echo "no output in $1" >&2; cat "${2:-/dev/null}" >&2; exit 1
}

# The gateway's policy for the benchmarks: API-key identity (bench-key), a
# keyword routing rule, a tool rule; everything goes to the upstream UP.
write_policy() { # FILE UP
  cat > "$1" <<YAML
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: bench}
spec:
  agents: [{name: load, apiKeySecretRef: {name: k, key: load}}]
  providers: [{name: up, type: openai, baseUrl: "$2"}]
  routing:
    defaultProvider: up
    rules: [{name: phi, keywords: [patient, diagnosis, prescription], provider: up}]
  tools:
    rules: [{tools: [search_*], action: Allow}]
---
apiVersion: v1
kind: Secret
metadata: {name: k}
stringData: {load: bench-key}
YAML
}
