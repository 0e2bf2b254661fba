//go:build tools

// Package tools pins the programs the test control plane builds from the
// Kubernetes release module: kube-apiserver and kubectl.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
