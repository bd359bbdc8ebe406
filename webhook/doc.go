// Package webhook serves policy-webhook's validating admission webhooks over
// HTTPS: a bounded server (Server, Limits), handlers that decode the
// AdmissionReview and write the verdict (Handlers), and their metrics.
//
// Decoding and deciding are kept apart, in the style of controller-runtime's
// admission package: an http.Handler per path (review.go) reads and checks
// the HTTP request and the AdmissionReview envelope, then asks a small
// admission.Handler for the verdict on the request (admit.go for Pods and
// MyApples, policies.go for the policy objects themselves), and writes the
// response. The Pod and MyApple handlers answer from a Judge, the informer
// cache of package cache, so answering never calls the API server.
//
// Package cmd/policy-webhook/app starts it, on controller-runtime's manager.
package webhook
