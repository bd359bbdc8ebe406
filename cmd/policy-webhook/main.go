// Command policy-webhook is the admission webhook (`serve`), its offline
// twin (`check`), which judges manifests against policy files the way the
// webhook would judge them in a cluster, and `import-vap`, which converts
// ValidatingAdmissionPolicies into its policies.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `policy-webhook judges Pod and MyApple admissions against policy.

Usage:
  policy-webhook check -p PATH [-p PATH ...] [-n NAMESPACE] [-o text|json] FILE ...
  policy-webhook check -p PATH [-p PATH ...] [-o text|json] --cluster [--kubeconfig FILE]
  policy-webhook check --candidate -p PATH [-p PATH ...] FILE ...
  policy-webhook import-vap [--configmap NAMESPACE] FILE ...
  policy-webhook promote [--kubeconfig FILE] admissionpolicy/NAME | configmap/NAMESPACE/NAME
  policy-webhook serve [flags]
  policy-webhook version

Run "policy-webhook <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return runCheck(ctx, args[1:], stdin, stdout, stderr)
	case "promote":
		return runPromote(ctx, args[1:], stdout, stderr)
	case "import-vap":
		return runImportVAP(args[1:], stdin, stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "policy-webhook: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}
