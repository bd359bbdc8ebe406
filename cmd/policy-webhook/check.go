package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Exit codes of check, for CI pipelines.
const (
	exitAdmitted = 0 // every object admitted (warnings allowed)
	exitDenied   = 1 // at least one object refused
	exitUsage    = 2 // usage error, invalid policy or unreadable input
)

// pathsFlag collects a repeatable -p.
type pathsFlag []string

func (p *pathsFlag) String() string     { return strings.Join(*p, ",") }
func (p *pathsFlag) Set(v string) error { *p = append(*p, v); return nil }

func runCheck(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var policies pathsFlag
	fs.Var(&policies, "p", "policy file or directory (recursive) of policy ConfigMaps, AdmissionPolicies and PolicyExceptions; repeatable")
	namespace := fs.String("n", "default", "namespace of objects that name none")
	output := fs.String("o", check.FormatText, "output format: text or json")
	policyNamespace := fs.String("policy-namespace", "policy-system", "the webhook's namespace: ConfigMap policies there apply cluster-wide")
	inCluster := fs.Bool("cluster", false, "judge the Pods and MyApples that exist in the cluster of the kubeconfig (read in pages), instead of FILEs")
	kubeconfig := fs.String("kubeconfig", "", "with --cluster: the kubeconfig to use (default $KUBECONFIG, then ~/.kube/config), at its current context")
	candidate := fs.Bool("candidate", false, "judge each policy's candidate (spec.candidate, or a ConfigMap's candidate.yaml) beside it and print where they disagree; exit 1 when a candidate would deny what the policy admits")
	var now timeFlag
	fs.Var(&now, "now", "judge at this instant (RFC3339), for PolicyExceptions' expiry: what the webhook would answer then (default: the current time)")
	maxException := fs.Duration("max-exception-duration", check.DefaultMaxExceptionDuration, "as the webhook's flag: how far ahead a PolicyException judged as a FILE may expire")
	policyLimits := bindPolicyLimits(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: policy-webhook check -p PATH [-p PATH ...] [-n NAMESPACE] [-o text|json] FILE ...\n"+
			"       policy-webhook check -p PATH [-p PATH ...] [-o text|json] --cluster [--kubeconfig FILE]\n\n"+
			"Judges the Pods, Pod controllers, MyApples, AdmissionReviews and PolicyExceptions in FILEs (\"-\" is stdin) against the policy\n"+
			"under -p, in input order, as the webhook would. With --cluster, judges the Pods and MyApples\n"+
			"that exist in the cluster as if each were created now, and lists those with violations.\n"+
			"With --candidate, judges each policy's candidate in its place and prints the objects on\n"+
			"which they disagree (would deny, would allow, would warn).\n"+
			"Exit status: 0 all admitted, 1 any denied (with --candidate: any a candidate would deny\n"+
			"that the policy admits), 2 usage error or invalid policy or input.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitAdmitted
		}
		return exitUsage
	}
	switch {
	case len(policies) == 0:
		return usageError(stderr, fs, "at least one -p PATH is required")
	case *inCluster && fs.NArg() > 0:
		return usageError(stderr, fs, "--cluster judges the cluster's objects: give no FILE")
	case !*inCluster && *kubeconfig != "":
		return usageError(stderr, fs, "--kubeconfig is only used with --cluster")
	case !*inCluster && fs.NArg() == 0:
		return usageError(stderr, fs, "at least one FILE to judge is required (\"-\" for stdin)")
	case *output != check.FormatText && *output != check.FormatJSON:
		return usageError(stderr, fs, fmt.Sprintf("-o %q: must be text or json", *output))
	}

	policyDocs, err := check.ReadPaths(policies, stdin)
	if err != nil {
		return failf(stderr, "reading policy: %v", err)
	}
	checker, err := check.New(policyDocs, check.Options{
		PolicyNamespace:      *policyNamespace,
		DefaultNamespace:     *namespace,
		Notes:                stderr,
		Limits:               policyLimits(),
		Candidate:            *candidate,
		Now:                  now.t,
		MaxExceptionDuration: *maxException,
	})
	if err != nil {
		return failf(stderr, "invalid policy: %v", err)
	}
	if checker.Policies() == 0 {
		fmt.Fprintf(stderr, "note: no policy found under %s: every object will be admitted\n", policies.String())
	}
	var results []*check.Result
	if *inCluster {
		results, err = judgeCluster(ctx, checker, *kubeconfig, stderr)
		if err != nil {
			return failf(stderr, "%v", err)
		}
	} else {
		objects, err := check.ReadPaths(fs.Args(), stdin)
		if err != nil {
			return failf(stderr, "reading input: %v", err)
		}
		for _, d := range objects {
			r, err := checker.Judge(d)
			if err != nil {
				return failf(stderr, "invalid input: %v", err)
			}
			if r != nil {
				results = append(results, r)
			}
		}
	}
	write := check.WriteText
	if *candidate {
		write = check.WriteCandidateText
	}
	if *output == check.FormatJSON {
		write = check.WriteJSON
	}
	if err := write(stdout, results); err != nil {
		return failf(stderr, "writing the report: %v", err)
	}
	if *candidate {
		return candidateExit(results, stderr)
	}
	for _, r := range results {
		if !r.Allowed {
			return exitDenied
		}
	}
	return exitAdmitted
}

// judgeCluster judges the objects of the kubeconfig's cluster.
func judgeCluster(ctx context.Context, checker *check.Checker, kubeconfig string, stderr io.Writer) ([]*check.Result, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.UserAgent = "policy-webhook-check"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client for %s: %w", cfg.Host, err)
	}
	results, totals, err := checker.JudgeCluster(ctx, kube, 0)
	if err != nil {
		return nil, fmt.Errorf("judging the objects of %s: %w", cfg.Host, err)
	}
	for _, kind := range totals.NotServed {
		fmt.Fprintf(stderr, "note: %s does not serve %ss: none judged\n", cfg.Host, kind)
	}
	fmt.Fprintf(stderr, "note: judged %d Pods and %d MyApples in %s; %d with violations listed, %d admitted without any\n",
		totals.Judged[policy.KindPod], totals.Judged[policy.KindMyApple], cfg.Host, len(results), totals.Admitted)
	return results, nil
}

func usageError(stderr io.Writer, fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(stderr, "policy-webhook check: %s\n\n", msg)
	fs.Usage()
	return exitUsage
}

func failf(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "policy-webhook check: "+format+"\n", args...)
	return exitUsage
}

// candidateExit says how the candidates fared, and is 1 when one would
// deny what its policy admits.
func candidateExit(results []*check.Result, stderr io.Writer) int {
	outcomes := map[string]int{}
	wouldDeny := false
	for _, r := range results {
		for _, d := range r.Candidate {
			outcomes[d.Outcome]++
		}
		wouldDeny = wouldDeny || r.WouldDeny()
	}
	fmt.Fprintf(stderr, "note: candidates: %d would deny, %d would allow, %d would warn\n",
		outcomes[v1alpha1.OutcomeWouldDeny], outcomes[v1alpha1.OutcomeWouldAllow], outcomes[v1alpha1.OutcomeWouldWarn])
	if wouldDeny {
		return exitDenied
	}
	return exitAdmitted
}

// timeFlag is an RFC 3339 instant.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("not an RFC3339 time (2027-01-31T00:00:00Z): %w", err)
	}
	f.t = t
	return nil
}
