// Package vap holds the in-tree ValidatingAdmissionPolicy to the webhook's
// CEL: a corpus of ValidatingAdmissionPolicies for Pods (corpus/, each file
// naming where its rule comes from) and Pods (pods.yaml), judged on a local
// control plane once by the API server's own ValidatingAdmissionPolicy and
// once by the webhook with the policy policy-webhook import-vap makes of it,
// and offline by check: the verdicts and messages must be the same.
package vap
