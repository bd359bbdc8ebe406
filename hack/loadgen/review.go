package main

import (
	"github.com/policy-webhook/policy-webhook/hack/workload"
)

// Names of the objects the harness puts in the cluster.
const (
	loadNamespace    = workload.Namespace
	serviceAccount   = workload.ServiceAccount
	registryPolicyCM = "registries"
	deniedImage      = workload.DeniedImage
)

// registryPolicy is the one rule every system in the comparison applies:
// the image must come from an allowed registry. The no-op webhook has the
// same list compiled in.
const registryPolicy = "pods:\n  allowedRegistries: [registry.example.com/, ghcr.io/acme/]\n"

// reviewVerdict is the part of an AdmissionReview response the harness checks.
type reviewVerdict struct {
	Response *struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
	} `json:"response"`
}
