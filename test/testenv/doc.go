// Package testenv is hack/devenv for tests: the control plane, waits that
// fail a testing.TB, transports that record or hold back a client's
// requests, and cert-manager's cainjector and certificates for the install
// proofs.
package testenv
