//go:build tools

// Package tools pins the main package hack/build-tools.sh builds (the etcd
// server module's root package is etcd's main), so that `go mod tidy` keeps
// every dependency it needs in go.mod and go.sum.
package tools

import _ "go.etcd.io/etcd/server/v3"
