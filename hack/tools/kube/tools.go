//go:build tools

// Package tools pins the main packages hack/build-tools.sh builds, so that
// `go mod tidy` in this module keeps every dependency they need in go.mod and
// go.sum and the build works with -mod=readonly.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
