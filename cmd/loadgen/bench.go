package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/policy-webhook/policy-webhook/internal/testenv"
)

type benchFlags struct {
	webhookBin, noopBin, goBin string
	out, logFile               string
	warmup, duration           time.Duration
	concurrency                []int
	apiConcurrency             int
	goBench                    bool
	benchtime                  string
	edits                      int
	mem                        memoryCounts
}

func parseFlags(args []string) (benchFlags, error) {
	var f benchFlags
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&f.webhookBin, "webhook-bin", "bin/policy-webhook", "the policy-webhook binary to measure")
	fs.StringVar(&f.noopBin, "noop-bin", "bin/loadgen-noop", "the no-op webhook binary (cmd/loadgen/noop)")
	fs.StringVar(&f.goBin, "go", "go", "the go command, for the in-process benchmarks")
	fs.StringVar(&f.out, "out", ".dev/bench.json", "where to write the results as JSON")
	fs.StringVar(&f.logFile, "log", ".dev/bench.log", "where the control plane's and the webhooks' logs go")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "warm-up before each counted run")
	fs.DurationVar(&f.duration, "duration", 5*time.Second, "counted time of each run")
	conc := fs.String("concurrency", "1,8,32", "concurrency levels of the direct runs")
	fs.IntVar(&f.apiConcurrency, "apiserver-concurrency", 8, "concurrency of the runs through the API server")
	fs.BoolVar(&f.goBench, "go-bench", true, "run the in-process Go benchmarks first")
	fs.StringVar(&f.benchtime, "benchtime", "1s", "go test -benchtime")
	fs.IntVar(&f.edits, "edits", 50, "policy edits timed for propagation")
	fs.IntVar(&f.mem.policies, "policy-configmaps", 1000, "policy ConfigMaps in the memory run")
	fs.IntVar(&f.mem.unrelated, "unrelated-configmaps", 10000, "unrelated ConfigMaps in the memory run")
	fs.IntVar(&f.mem.myApples, "myapples", 10000, "MyApples in the memory run")
	fs.IntVar(&f.mem.workers, "create-workers", 32, "concurrent creates when filling the cluster")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return f, fmt.Errorf("-concurrency: %q is not a positive integer", s)
		}
		f.concurrency = append(f.concurrency, n)
	}
	return f, nil
}

func runBench(ctx context.Context, args []string) (err error) {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...) }
	rep := newReport(f)

	if f.goBench {
		logf("in-process benchmarks")
		rep.GoBenchmarks, err = runGoBenchmarks(ctx, f.goBin, "^(BenchmarkEvaluatePod|BenchmarkHandlePod)$", f.benchtime,
			[]string{"./policy", "./webhook"}, os.Stderr)
		if err != nil {
			return err
		}
	}

	if err := os.MkdirAll(filepath.Dir(f.logFile), 0o755); err != nil {
		return fmt.Errorf("creating the log directory: %w", err)
	}
	logw, err := os.Create(f.logFile)
	if err != nil {
		return fmt.Errorf("creating %s: %w", f.logFile, err)
	}
	defer logw.Close()
	log := logr.FromSlogHandler(slog.NewTextHandler(logw, nil))
	ctrllog.SetLogger(log)
	klog.SetLogger(log)

	logf("starting the control plane (logs in %s)", f.logFile)
	cp, err := testenv.StartControlPlane(ctx, testenv.ControlPlaneOptions{Log: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cp.Stop()) }()

	tmp, err := os.MkdirTemp("", "loadgen-")
	if err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := cp.WriteKubeConfig(kubeconfig); err != nil {
		return err
	}
	certDir := filepath.Join(tmp, "certs")
	ca, tlsConfig, err := servingCert(certDir)
	if err != nil {
		return err
	}

	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = "loadgen"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building a clientset: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building a dynamic client: %w", err)
	}
	c := clients{kube: kube, dyn: dyn}
	if err := c.seed(ctx); err != nil {
		return err
	}

	logf("starting policy-webhook (%s) and the no-op (%s)", f.webhookBin, f.noopBin)
	ours, err := startPolicyWebhook(ctx, f.webhookBin, kubeconfig, certDir, logw)
	if err != nil {
		return err
	}
	defer ours.child.stop()
	noop, err := startNoop(ctx, f.noopBin, certDir, tlsConfig, logw)
	if err != nil {
		return err
	}
	defer noop.child.stop()
	// Idle: synced, nothing served yet.
	for _, s := range []*server{ours, noop} {
		p, err := readProc(s.child.pid())
		if err != nil {
			return err
		}
		rep.IdleRSS[s.name] = p.rssBytes
	}

	if err := directRuns(ctx, f, rep, ours, noop, tlsConfig, logf); err != nil {
		return err
	}
	if err := apiserverRuns(ctx, f, rep, c, ours, noop, ca.CertPEM(), logf); err != nil {
		return err
	}

	logf("propagation: %d edits", f.edits)
	if rep.Propagation, err = measurePropagation(ctx, c, ours, directClient(tlsConfig, 1), f.edits); err != nil {
		return err
	}

	logf("memory: %d policy ConfigMaps, %d unrelated ConfigMaps, %d MyApples", f.mem.policies, f.mem.unrelated, f.mem.myApples)
	if rep.Memory, err = measureMemory(ctx, c, ours, f.mem, logf); err != nil {
		return err
	}

	rep.print(os.Stdout)
	return rep.write(f.out)
}

// directRuns measures both servers on every (verdict, concurrency), the
// no-op first each time.
func directRuns(ctx context.Context, f benchFlags, rep *report, ours, noop *server, tlsConfig *tls.Config, logf func(string, ...any)) error {
	for _, denied := range []bool{false, true} {
		verdict := map[bool]string{false: "allowed", true: "denied"}[denied]
		body, err := reviewBody(loadPod(denied), "loadgen-"+verdict)
		if err != nil {
			return err
		}
		rep.ReviewBytes = len(body)
		for _, conc := range f.concurrency {
			spec := loadSpec{concurrency: conc, warmup: f.warmup, duration: f.duration}
			row := directRow{Verdict: verdict, Concurrency: conc}
			for _, s := range []*server{noop, ours} {
				client := directClient(tlsConfig, conc)
				res, cost, err := measured(ctx, s, spec, func(int) attempt {
					return postReview(client, s.url+"/validate-pods", body, "loadgen-"+verdict, !denied)
				})
				client.CloseIdleConnections()
				if err != nil {
					return err
				}
				logf("direct %s c=%d %s: %.0f req/s p99 %s errors %d wrong %d", verdict, conc, s.name, res.PerSecond, res.P99, res.Errors, res.WrongVerdict)
				run := serverRun{Load: res, Cost: cost}
				if s == noop {
					row.Noop = run
				} else {
					row.Ours = run
				}
			}
			rep.Direct = append(rep.Direct, row)
		}
	}
	return nil
}

// apiserverRuns measures dry-run Pod creates through the API server with
// no webhook, the no-op, and policy-webhook registered.
func apiserverRuns(ctx context.Context, f benchFlags, rep *report, c clients, ours, noop *server, caPEM []byte, logf func(string, ...any)) error {
	spec := loadSpec{concurrency: f.apiConcurrency, warmup: f.warmup, duration: f.duration}
	for _, s := range []*server{nil, noop, ours} {
		name := "none"
		if s != nil {
			name = s.name
		}
		if err := c.route(ctx, s, caPEM); err != nil {
			return err
		}
		res, cost, err := measured(ctx, s, spec, func(int) attempt {
			pod := loadPod(false)
			return c.dryRunCreate(pod, false)
		})
		if err != nil {
			return err
		}
		logf("apiserver c=%d webhook=%s: %.0f req/s p99 %s errors %d wrong %d", spec.concurrency, name, res.PerSecond, res.P99, res.Errors, res.WrongVerdict)
		rep.APIServer = append(rep.APIServer, apiRow{Webhook: name, Concurrency: spec.concurrency, serverRun: serverRun{Load: res, Cost: cost}})
	}
	// Leave the cluster routed to policy-webhook for what follows: policy
	// edits and objects are judged by it, as in a real cluster.
	return nil
}
