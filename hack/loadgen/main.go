// Command loadgen is the webhook's load harness: it starts a local
// control plane, runs `policy-webhook serve` and the stdlib no-op webhook
// (hack/loadgen/noop) as child processes on the same certificate, and
// measures both in the same run, so every figure has a floor to be read
// against:
//
//   - direct: AdmissionReview POSTs over HTTPS with keep-alive, closed loop
//     at fixed concurrency, every verdict checked;
//   - apiserver: dry-run Pod creates through the API server, with no
//     webhook, the no-op, and policy-webhook registered in turn (a policy
//     of 5 CEL validations in force);
//   - propagation: a policy ConfigMap edited again and again, timed from the
//     API server accepting the edit to the first admission that enforces it;
//   - memory: RSS and live heap as policy ConfigMaps, unrelated ConfigMaps
//     and MyApples fill the cluster.
//
// It prints one table and writes it as JSON. It is not part of the
// production binary. `make bench` runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runBench(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
