package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/policy-webhook/policy-webhook/check"
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

func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var policies pathsFlag
	fs.Var(&policies, "p", "policy file or directory (recursive) of policy ConfigMaps and AdmissionPolicies; repeatable")
	namespace := fs.String("n", "default", "namespace of objects that name none")
	output := fs.String("o", check.FormatText, "output format: text or json")
	policyNamespace := fs.String("policy-namespace", "policy-system", "the webhook's namespace: ConfigMap policies there apply cluster-wide")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: policy-webhook check -p PATH [-p PATH ...] [-n NAMESPACE] [-o text|json] FILE ...\n\n"+
			"Judges the Pods, MyApples and AdmissionReviews in FILEs (\"-\" is stdin) against the policy\n"+
			"under -p, in input order, as the webhook would. Exit status: 0 all admitted, 1 any denied,\n"+
			"2 usage error or invalid policy or input.\n\n")
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
	case fs.NArg() == 0:
		return usageError(stderr, fs, "at least one FILE to judge is required (\"-\" for stdin)")
	case *output != check.FormatText && *output != check.FormatJSON:
		return usageError(stderr, fs, fmt.Sprintf("-o %q: must be text or json", *output))
	}

	policyDocs, err := check.ReadPaths(policies, stdin)
	if err != nil {
		return failf(stderr, "reading policy: %v", err)
	}
	checker, err := check.New(policyDocs, check.Options{
		PolicyNamespace:  *policyNamespace,
		DefaultNamespace: *namespace,
		Notes:            stderr,
	})
	if err != nil {
		return failf(stderr, "invalid policy: %v", err)
	}
	if checker.Policies() == 0 {
		fmt.Fprintf(stderr, "note: no policy found under %s: every object will be admitted\n", policies.String())
	}
	objects, err := check.ReadPaths(fs.Args(), stdin)
	if err != nil {
		return failf(stderr, "reading input: %v", err)
	}
	var results []*check.Result
	for _, d := range objects {
		r, err := checker.Judge(d)
		if err != nil {
			return failf(stderr, "invalid input: %v", err)
		}
		if r != nil {
			results = append(results, r)
		}
	}
	write := check.WriteText
	if *output == check.FormatJSON {
		write = check.WriteJSON
	}
	if err := write(stdout, results); err != nil {
		return failf(stderr, "writing the report: %v", err)
	}
	for _, r := range results {
		if !r.Allowed {
			return exitDenied
		}
	}
	return exitAdmitted
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
