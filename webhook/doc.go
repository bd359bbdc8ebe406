// Package webhook serves policy-webhook's validating admission webhooks over
// TLS, on controller-runtime's manager and webhook server.
//
// Decoding and deciding are kept apart, in the style of controller-runtime's
// admission package: an http.Handler per path (review.go) reads and checks
// the HTTP request and the AdmissionReview envelope, then asks a small
// admission.Handler for the verdict on the request (admit.go for Pods and
// MyApples, policies.go for the policy objects themselves), and writes the
// response. The Pod and MyApple handlers answer from a Judge, the informer
// cache of package cache, so answering never calls the API server.
//
// Run wires it all together: clients, the live cache, the manager with its
// metrics and health probe servers, TLS from files that are reloaded when
// they change, and a graceful shutdown that stops being ready first.
package webhook
