// Package app is policy-webhook's wiring: options to clients, the informer
// cache, the webhook, metrics and probe servers, leader election and the
// leader's controllers, started together and shut down in order.
package app
