//go:build tools

// Package tools pins golangci-lint for `make verify`: its own module, so
// that neither its version nor its dependencies enter the product's go.mod.
package tools

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
