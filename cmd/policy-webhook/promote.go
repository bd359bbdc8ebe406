package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/policy-webhook/policy-webhook/controllers/promote"
)

// Exit codes of promote.
const (
	exitPromoted = 0
	exitConflict = 1 // lost a race with an edit: nothing written
)

func runPromote(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("promote", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "the kubeconfig to use (default $KUBECONFIG, then ~/.kube/config), at its current context")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: policy-webhook promote [--kubeconfig FILE] admissionpolicy/NAME\n"+
			"       policy-webhook promote [--kubeconfig FILE] configmap/NAMESPACE/NAME\n\n"+
			"Makes the policy's candidate (spec.candidate, or the ConfigMap's candidate.yaml) its spec\n"+
			"and removes it, in one update conditioned on the resourceVersion read: an edit made\n"+
			"in between fails the promotion, and nothing is written.\n"+
			"Exit status: 0 promoted, 1 changed concurrently (nothing written), 2 any other error.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "policy-webhook promote: name one policy\n\n")
		fs.Usage()
		return exitUsage
	}
	target, err := promote.ParseTarget(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "policy-webhook promote: %v\n\n", err)
		fs.Usage()
		return exitUsage
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "policy-webhook promote: loading the kubeconfig: %v\n", err)
		return exitUsage
	}
	cfg.UserAgent = "policy-webhook-promote"
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "policy-webhook promote: %v\n", err)
		return exitUsage
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "policy-webhook promote: %v\n", err)
		return exitUsage
	}
	res, err := promote.Promote(ctx, dyn, kube, target)
	switch {
	case errors.Is(err, promote.ErrConflict):
		fmt.Fprintf(stderr, "policy-webhook promote: %v\n", err)
		return exitConflict
	case err != nil:
		fmt.Fprintf(stderr, "policy-webhook promote: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: candidate promoted to the spec (resourceVersion %s -> %s)\n", res.Target, res.From, res.To)
	return exitPromoted
}
