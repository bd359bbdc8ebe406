package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/webhook"
)

type benchFlags struct {
	webhookBin, noopBin, goBin string
	webhookArgs                []string
	out, logFile               string
	warmup, duration           time.Duration
	concurrency                []int
	apiConcurrency             int
	rounds, apiRounds          int
	containers                 int
	stages                     map[string]bool
	profile                    string
	goBench                    bool
	benchtime                  string
	edits                      int
	quotaCreates               int
	mem                        memoryCounts
}

func parseFlags(args []string) (benchFlags, error) {
	var f benchFlags
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&f.webhookBin, "webhook-bin", "bin/policy-webhook", "the policy-webhook binary to measure")
	fs.StringVar(&f.noopBin, "noop-bin", "bin/loadgen-noop", "the no-op webhook binary (hack/loadgen/noop)")
	fs.Func("webhook-arg", "an argument added to `policy-webhook serve`'s, e.g. --audit-interval=10s (repeatable)", func(v string) error {
		f.webhookArgs = append(f.webhookArgs, v)
		return nil
	})
	fs.StringVar(&f.goBin, "go", "go", "the go command, for the in-process benchmarks")
	fs.StringVar(&f.out, "out", ".dev/bench.json", "where to write the results as JSON")
	fs.StringVar(&f.logFile, "log", ".dev/bench.log", "where the control plane's and the webhooks' logs go")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "warm-up (not counted) of each contender in each run, over all rounds")
	fs.DurationVar(&f.duration, "duration", 5*time.Second, "counted time of each contender in each run, over all rounds")
	conc := fs.String("concurrency", "1,8,32", "concurrency levels of the direct runs")
	fs.IntVar(&f.apiConcurrency, "apiserver-concurrency", 8, "concurrency of the runs through the API server")
	fs.IntVar(&f.rounds, "rounds", 5, "windows per contender, alternated, that -warmup and -duration are shared out over")
	// Through the API server, rates move with whatever else the API server
	// and etcd are doing; more windows of the same length make the median
	// steady enough to compare contenders within a few percent.
	fs.IntVar(&f.apiRounds, "apiserver-rounds", 15, "windows per contender through the API server, each as long as a direct run's")
	fs.IntVar(&f.containers, "containers", 2, "containers in the load Pod (2 makes the 3.7 KB review)")
	fs.StringVar(&f.profile, "cpu-profile", "", "if set, write policy-webhook's CPU profile under direct load (allowed Pods, c=8, 10 s) to this file")
	stages := fs.String("stages", "direct,apiserver,registries,propagation,memory,quota,audit,rollout", "which load stages to run")
	fs.BoolVar(&f.goBench, "go-bench", true, "run the in-process Go benchmarks first")
	fs.StringVar(&f.benchtime, "benchtime", "1s", "go test -benchtime")
	fs.IntVar(&f.edits, "edits", 50, "policy edits timed for propagation")
	fs.IntVar(&f.quotaCreates, "quota-creates", 500, "MyApple creates timed in each namespace (with and without a quota) in the quota run")
	fs.IntVar(&f.mem.policies, "policy-configmaps", 1000, "policy ConfigMaps in the memory run")
	fs.IntVar(&f.mem.unrelated, "unrelated-configmaps", 10000, "unrelated ConfigMaps in the memory run")
	fs.IntVar(&f.mem.myApples, "myapples", 10000, "MyApples in the memory run")
	fs.IntVar(&f.mem.workers, "create-workers", 32, "concurrent creates when filling the cluster")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.stages = map[string]bool{}
	for _, st := range strings.Split(*stages, ",") {
		switch st = strings.TrimSpace(st); st {
		case "direct", "apiserver", "registries", "propagation", "quota", "memory", "audit", "rollout":
			f.stages[st] = true
		default:
			return f, fmt.Errorf("-stages: unknown stage %q", st)
		}
	}
	if f.containers < 2 {
		return f, fmt.Errorf("-containers must be at least 2")
	}
	if f.rounds < 1 || f.apiRounds < 1 {
		return f, fmt.Errorf("-rounds and -apiserver-rounds must be at least 1")
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
		rep.GoBenchmarks, err = runGoBenchmarks(ctx, f.goBin,
			"^(BenchmarkEvaluatePod|BenchmarkHandlePod|BenchmarkHandlePodController|BenchmarkHandlePodExceptions|BenchmarkCacheEvaluatePod|BenchmarkMyAppleQuantity|BenchmarkHandlePodCEL|BenchmarkHandlePodCandidate|BenchmarkEvaluateHas|BenchmarkCompile10Expressions)$", f.benchtime,
			[]string{"./policy", "./policy/cel", "./cache", "./webhook"}, os.Stderr)
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
	// kube-controller-manager turns the rollout stage's Deployments into Pods.
	cp, err := devenv.StartControlPlane(ctx, devenv.ControlPlaneOptions{Log: log, ControllerManager: f.stages["rollout"]})
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
	ours, err := startPolicyWebhook(ctx, f.webhookBin, kubeconfig, certDir, f.webhookArgs, logw)
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

	// A stage that fails still leaves the ones before it in the table.
	stageErr := runStages(ctx, f, rep, c, ours, noop, ca.CertPEM(), tlsConfig, logf)
	rep.print(os.Stdout)
	return errors.Join(stageErr, rep.write(f.out))
}

// runStages runs the load stages f selects, filling rep.
func runStages(ctx context.Context, f benchFlags, rep *report, c clients, ours, noop *server, caPEM []byte, tlsConfig *tls.Config, logf func(string, ...any)) (err error) {
	if f.stages["direct"] {
		if err := directRuns(ctx, f, rep, ours, noop, tlsConfig, logf); err != nil {
			return err
		}
	}
	if f.profile != "" {
		logf("CPU profile of policy-webhook under direct load -> %s", f.profile)
		if err := captureProfile(ctx, ours, tlsConfig, 8, 10*time.Second, f.profile); err != nil {
			return err
		}
	}
	if f.stages["apiserver"] {
		if err := apiserverRuns(ctx, f, rep, c, ours, noop, caPEM, logf); err != nil {
			return err
		}
	}
	if f.stages["registries"] {
		logf("registries: dry-run Pod creates through the API server, the registries rule as none, VAP, built-in, CEL, c=%d", f.apiConcurrency)
		if err := registriesRuns(ctx, f, rep, c, ours, caPEM, logf); err != nil {
			return err
		}
	}
	// Policy edits and the objects that follow are judged by
	// policy-webhook, as in a real cluster.
	if err := c.route(ctx, ours, caPEM); err != nil {
		return err
	}
	if f.stages["propagation"] {
		logf("propagation: %d edits", f.edits)
		if rep.Propagation, err = measurePropagation(ctx, c, ours, directClient(tlsConfig, 1), f.edits, "edited", builtinSpec); err != nil {
			return err
		}
		logf("propagation: %d edits of a CEL policy", f.edits)
		if rep.PropagationCEL, err = measurePropagation(ctx, c, ours, directClient(tlsConfig, 1), f.edits, "edited-cel", celSpec); err != nil {
			return err
		}
	}
	if f.stages["memory"] {
		logf("memory: %d policy ConfigMaps, %d unrelated ConfigMaps, %d MyApples", f.mem.policies, f.mem.unrelated, f.mem.myApples)
		if rep.Memory, err = measureMemory(ctx, c, ours, f.mem, logf); err != nil {
			return err
		}
	}
	// After memory: its figures count the MyApples of its own run only.
	if f.stages["quota"] {
		logf("quota: %d MyApple creates with and without a quota, c=%d", f.quotaCreates, f.apiConcurrency)
		if rep.Quota, err = measureQuota(ctx, c, ours, f.quotaCreates, f.apiConcurrency); err != nil {
			return err
		}
	}
	if f.stages["rollout"] {
		logf("rollout: %d Deployments × %d replicas through kube-controller-manager, %d policies, without and with the webhook", rolloutDeployments, rolloutReplicas, rolloutPolicies)
		if rep.Rollout, err = measureRollout(ctx, c, ours, caPEM, 2, logf); err != nil {
			return err
		}
		if err := c.route(ctx, ours, caPEM); err != nil {
			return err
		}
	}
	// Last: sweeps judge what the runs before left in the cluster.
	if f.stages["audit"] {
		logf("audit: direct load with and without audit sweeps running")
		if rep.AuditLoad, err = measureAuditLoad(ctx, f, c, ours, tlsConfig); err != nil {
			return err
		}
	}
	return nil
}

// directRuns measures both servers on every (verdict, concurrency).
func directRuns(ctx context.Context, f benchFlags, rep *report, ours, noop *server, tlsConfig *tls.Config, logf func(string, ...any)) error {
	spec := f.window()
	for _, denied := range []bool{false, true} {
		verdict := map[bool]string{false: "allowed", true: "denied"}[denied]
		uid := "loadgen-" + verdict
		body, err := workload.CreateReview(workload.DeploymentPod(denied, f.containers), uid)
		if err != nil {
			return err
		}
		rep.ReviewBytes = len(body)
		for _, conc := range f.concurrency {
			spec.concurrency = conc
			var cs []contender
			var clients []*http.Client
			for _, s := range []*server{noop, ours} {
				client := directClient(tlsConfig, conc)
				clients = append(clients, client)
				c := contender{name: s.name, server: s}
				for range conc {
					c.attempts = append(c.attempts, postReview(client, s.url+"/validate-pods", body, uid, !denied))
				}
				cs = append(cs, c)
			}
			res, costs, err := compare(ctx, spec, f.rounds, cs)
			for _, cl := range clients {
				cl.CloseIdleConnections()
			}
			if err != nil {
				return err
			}
			for i, c := range cs {
				logf("direct %s c=%d %s: %.0f req/s p99 %s errors %d wrong %d", verdict, conc, c.name, res[i].PerSecond, res[i].P99, res[i].Errors, res[i].WrongVerdict)
			}
			rep.Direct = append(rep.Direct, directRow{Verdict: verdict, Concurrency: conc,
				Noop: serverRun{Load: res[0], Cost: costs[0]}, Ours: serverRun{Load: res[1], Cost: costs[1]}})
		}
	}
	return nil
}

// apiserverRuns measures dry-run Pod creates through the API server with
// no webhook, the no-op, and policy-webhook registered, in turn, with a
// policy of 5 CEL validations in force beside the registry policy.
func apiserverRuns(ctx context.Context, f benchFlags, rep *report, c clients, ours, noop *server, caPEM []byte, logf func(string, ...any)) error {
	cms := c.kube.CoreV1().ConfigMaps(webhook.DefaultPolicyNamespace)
	if err := ignoreExists(cms.Create(ctx, devenv.PolicyConfigMap(webhook.DefaultPolicyNamespace, celPolicyCM, workload.CELPolicy), metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("creating the CEL policy: %w", err)
	}
	defer func() { _ = cms.Delete(context.WithoutCancel(ctx), celPolicyCM, metav1.DeleteOptions{}) }()
	spec := f.window()
	spec.concurrency = f.apiConcurrency
	var cs []contender
	for _, s := range []*server{nil, noop, ours} {
		con := contender{name: "none", server: s, prepare: func(ctx context.Context) error { return c.route(ctx, s, caPEM) }}
		if s != nil {
			con.name = s.name
		}
		for range spec.concurrency {
			con.attempts = append(con.attempts, c.dryRunCreate(workload.DeploymentPod(false, f.containers), false))
		}
		cs = append(cs, con)
	}
	res, costs, err := compare(ctx, spec, f.apiRounds, cs)
	if err != nil {
		return err
	}
	for i, con := range cs {
		logf("apiserver c=%d webhook=%s: %.0f req/s p99 %s errors %d wrong %d", spec.concurrency, con.name, res[i].PerSecond, res[i].P99, res[i].Errors, res[i].WrongVerdict)
		rep.APIServer = append(rep.APIServer, apiRow{Webhook: con.name, Concurrency: spec.concurrency, serverRun: serverRun{Load: res[i], Cost: costs[i]}})
	}
	return nil
}

// window is one counted window of a round: the duration and warm-up
// shared out over the rounds.
func (f benchFlags) window() loadSpec {
	return loadSpec{warmup: f.warmup / time.Duration(f.rounds), duration: f.duration / time.Duration(f.rounds)}
}
