package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// result is what kubectl said about applying one object.
type result struct {
	stdout   string
	warnings []string
	refusal  string // the API server's refusal, "" when admitted
}

// apply runs `kubectl apply -f -` for one object. A refusal by the API
// server is a result; only failing to run kubectl at all is an error.
func apply(ctx context.Context, kubectl, kubeconfig string, obj *object) (*result, error) {
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "-f", "-")
	cmd.Stdin = bytes.NewReader(obj.raw)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return nil, fmt.Errorf("running %s for %s from %s: %w", kubectl, obj.ref(), obj.file, runErr)
	}
	res := &result{stdout: strings.TrimSpace(stdout.String())}
	var rest []string
	for _, line := range strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n") {
		if w, ok := strings.CutPrefix(line, "Warning: "); ok {
			res.warnings = append(res.warnings, w)
			continue
		}
		if line != "" {
			rest = append(rest, line)
		}
	}
	if runErr != nil {
		res.refusal = userMessage(strings.Join(rest, "\n"))
		if res.refusal == "" {
			res.refusal = runErr.Error()
		}
	}
	return res, nil
}

// userMessage keeps what the API server said, without kubectl's framing
// (`Error from server (Forbidden): error when creating "STDIN": `).
func userMessage(stderr string) string {
	if _, msg, ok := strings.Cut(stderr, `error when creating "STDIN": `); ok {
		return msg
	}
	if _, msg, ok := strings.Cut(stderr, `error when applying patch:`); ok {
		return strings.TrimSpace(msg)
	}
	return stderr
}

// outcome is the verdict in the vocabulary of the expect annotation.
func (r *result) outcome() string {
	switch {
	case r.refusal != "":
		return "deny"
	case len(r.warnings) > 0:
		return "warn"
	}
	return "allow"
}

func (r *result) verdictLine(obj *object) string {
	switch r.outcome() {
	case "deny":
		return "REFUSED   " + obj.ref()
	case "warn":
		return fmt.Sprintf("ADMITTED  %s, with %d warning(s)", obj.ref(), len(r.warnings))
	}
	return "ADMITTED  " + obj.ref()
}

// summaryLine reports an object demo does not judge: namespaces and policies.
func (r *result) summaryLine(obj *object) string {
	if r.refusal != "" {
		return fmt.Sprintf("refused   %s: %s", obj.ref(), r.refusal)
	}
	return "applied   " + obj.ref()
}

// showRollouts waits for the Pods of each admitted Deployment of the
// samples, which kube-controller-manager creates through a ReplicaSet and
// the webhook judges at their own admission, and prints them.
func showRollouts(ctx context.Context, o options, objs []*object) error {
	for _, obj := range objs {
		if obj.kind != "Deployment" || obj.expect != "allow" {
			continue
		}
		var pods []string
		deadline := time.Now().Add(30 * time.Second)
		for {
			// pod-template-hash: the Pods of a ReplicaSet, not a bare Pod with the same labels.
			cmd := exec.CommandContext(ctx, o.kubectl, "--kubeconfig", o.kubeconfig, "get", "pods", "-n", obj.namespace,
				"-l", "app="+obj.name+",pod-template-hash", "-o", "name")
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("listing the Pods of %s: %w", obj.ref(), err)
			}
			pods = strings.Fields(string(out))
			if len(pods) >= obj.replicas || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		fmt.Printf("\n%s: its ReplicaSet created %d of %d Pods, each admitted by the webhook: %s\n", obj.ref(), len(pods), obj.replicas, strings.Join(pods, " "))
		if len(pods) < obj.replicas {
			return fmt.Errorf("%s: %d of %d Pods after 30s", obj.ref(), len(pods), obj.replicas)
		}
	}
	return nil
}
