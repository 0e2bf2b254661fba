#!/usr/bin/env bash
# Builds the test control plane from the Go module proxy: kube-apiserver and
# kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3 at the
# version that Kubernetes release pins (see go.mod). The binaries go to
# target/control-plane/<stamp>/, where <stamp> hashes go.mod and go.sum, so a
# build for these exact versions is reused and a version change rebuilds.
# Prints the directory holding the binaries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
stamp="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
out="${PALISADE_CONTROL_PLANE_BIN:-$root/target/control-plane/$stamp}"
bins=(etcd kube-apiserver kubectl)
have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: go is not on the PATH (the control plane is built from Go modules)" >&2; exit 1; }
mkdir -p "$out"
# One build at a time (parallel test binaries may all ask for it).
exec 9>"$out.lock"
flock 9
if have_all; then echo "$out"; exit 0; fi
started=$SECONDS
echo "build.sh: building etcd, kube-apiserver and kubectl into $out (cold: ~7 min on 2 cores)" >&2
cd "$here"
tmp="$(mktemp -d "$out.tmp.XXXX")"
trap 'rm -rf "$tmp"' EXIT
# The version the binaries report (/version, kubectl version), as the
# Kubernetes release build stamps it.
kver="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' go.mod)"
minor="$(echo "$kver" | cut -d. -f2)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$tmp/" \
  ./cmd/etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
for b in "${bins[@]}"; do mv "$tmp/$b" "$out/$b"; done
echo "build.sh: built in $((SECONDS - started)) s" >&2
echo "$out"
