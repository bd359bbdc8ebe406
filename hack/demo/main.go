// Command demo is `make demo`: it starts hack/devcluster (a local control
// plane with kube-controller-manager and the webhook registered), applies manifests/samples with kubectl
// one object at a time in file order, so a refusal does not stop the rest,
// and shows which Pods and MyApples the API server admitted and which it
// refused, with the messages and warnings a user sees. Then it stops the
// cluster.
//
// Every judged sample says what should happen to it in the annotation
// policy.example.com/expect (allow, warn or deny); demo compares, and exits
// non-zero when the cluster disagrees, since then the product is broken.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

type options struct {
	devcluster string
	kubectl    string
	samples    string
	kubeconfig string
	logFile    string
	kcmLogFile string
	timeout    time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.devcluster, "devcluster", "bin/devcluster", "the devcluster binary")
	flag.StringVar(&o.kubectl, "kubectl", "kubectl", "the kubectl binary")
	flag.StringVar(&o.samples, "samples", "manifests/samples", "directory of sample manifests, applied in file-name order")
	flag.StringVar(&o.kubeconfig, "kubeconfig-out", ".dev/demo.kubeconfig", "where devcluster writes its kubeconfig")
	flag.StringVar(&o.logFile, "log", ".dev/demo-devcluster.log", "where devcluster's logs go")
	flag.StringVar(&o.kcmLogFile, "controller-manager-log", ".dev/demo-kube-controller-manager.log", "where the cluster's kube-controller-manager logs go")
	flag.DurationVar(&o.timeout, "startup-timeout", 3*time.Minute, "how long the cluster may take to be ready")
	flag.Parse()

	// Ctrl-C reaches devcluster too (same process group); demo only has to
	// stop applying and wait for it to clean up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (err error) {
	objs, err := readSamples(o.samples)
	if err != nil {
		return err
	}
	cluster, err := startCluster(ctx, o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cluster.stop()) }()

	fmt.Printf("\nApplying %d objects from %s, one at a time, in file order.\n\n", len(objs), o.samples)
	var judged, unexpected int
	for _, obj := range objs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res, err := apply(ctx, o.kubectl, o.kubeconfig, obj)
		if err != nil {
			return err
		}
		if !obj.judged() {
			fmt.Println(res.summaryLine(obj))
			continue
		}
		judged++
		fmt.Println()
		fmt.Println(res.verdictLine(obj))
		for _, w := range res.warnings {
			fmt.Println("    warning: " + w)
		}
		if res.refusal != "" {
			fmt.Println(indent(res.refusal, "    "))
		}
		if got := res.outcome(); obj.expect != "" && got != obj.expect {
			unexpected++
			fmt.Printf("    !! the sample expects %q, the cluster said %q\n", obj.expect, got)
		}
	}
	if err := showRollouts(ctx, o, objs); err != nil {
		return err
	}
	fmt.Printf("\n%d Pods, Pod controllers and MyApples judged by the API server through the webhook", judged)
	if unexpected > 0 {
		fmt.Printf("; %d did not get the verdict their sample expects.\n", unexpected)
		return fmt.Errorf("%d samples got an unexpected verdict", unexpected)
	}
	fmt.Println("; each got the verdict its sample expects.")
	return nil
}

// cluster is a running devcluster process.
type cluster struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

func startCluster(ctx context.Context, o options) (*cluster, error) {
	if err := os.MkdirAll(filepath.Dir(o.logFile), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", o.logFile, err)
	}
	logf, err := os.Create(o.logFile)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", o.logFile, err)
	}
	cmd := exec.Command(o.devcluster, "--kubeconfig-out", o.kubeconfig, "--controller-manager-log", o.kcmLogFile)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("piping devcluster's stdout: %w", err)
	}
	fmt.Printf("Starting the local control plane and the webhook (%s; logs in %s)...\n", o.devcluster, o.logFile)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", o.devcluster, err)
	}
	c := &cluster{cmd: cmd, log: logf, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if sc.Text() == "ready" && !signalled {
				signalled = true
				close(ready)
			}
		}
		// Drain so devcluster never blocks on a full pipe, then reap it.
		_, _ = io.Copy(io.Discard, stdout)
		c.done <- cmd.Wait()
	}()
	select {
	case <-ready:
		fmt.Printf("Ready in %s: kube-apiserver calls the webhook over TLS.\n", time.Since(start).Round(100*time.Millisecond))
		return c, nil
	case err := <-c.done:
		c.done <- err
		logf.Close()
		return nil, fmt.Errorf("devcluster exited before it was ready (%w); its log:\n%s", err, tail(o.logFile, 30))
	case <-time.After(o.timeout):
		_ = c.stop()
		return nil, fmt.Errorf("devcluster was not ready within %s; its log:\n%s", o.timeout, tail(o.logFile, 30))
	case <-ctx.Done():
		_ = c.stop()
		return nil, ctx.Err()
	}
}

// stop asks devcluster to shut down (SIGINT, as Ctrl-C would) and waits for
// it to stop the webhook and the control plane.
func (c *cluster) stop() error {
	defer c.log.Close()
	fmt.Println("\nStopping the local control plane.")
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-c.done:
		if err != nil {
			return fmt.Errorf("devcluster did not stop cleanly: %w", err)
		}
		return nil
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		return fmt.Errorf("devcluster did not stop within a minute; killed it")
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// sampleFiles lists the YAML files of dir in name order, leaving out a
// kustomization, which is not an object.
func sampleFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue
		}
		if name == "kustomization.yaml" || name == "kustomization.yml" {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	sort.Strings(files)
	return files, nil
}
