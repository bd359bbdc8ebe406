package e2e

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// env is the control plane and webhook all tests share: starting them takes
// seconds, so TestMain does it once, and each test isolates itself in
// namespaces of its own. It is set once, before any test runs.
var env *suite

type suite struct {
	cp  *devenv.ControlPlane
	wh  *inprocess.Webhook
	log logr.Logger
	// requests records every request the shared webhook makes to the API server.
	requests *testenv.RequestLog
	// client and dyn are admin clients without client-side rate limits.
	client kubernetes.Interface
	dyn    dynamic.Interface
	// cfg is the admin config they are built from.
	cfg *rest.Config
	// auditLog is the API server's audit log (JSON lines): Pod and MyApple
	// writes at level Metadata, which records the webhooks' audit annotations.
	auditLog string
	// logs keeps the webhook's log lines for Audit violations.
	logs *logRecorder
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(devenv.AssetsEnv) == "" {
		if testing.Short() {
			fmt.Println("e2e: skipped in -short mode: " + devenv.ErrNoAssets.Error())
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "FAIL: the end-to-end tests need a local control plane: "+devenv.ErrNoAssets.Error())
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// go test shows this output only for a failing package (or with -v).
	logs := newLogRecorder(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log := logr.FromSlogHandler(logs)
	ctrllog.SetLogger(log)
	klog.SetLogger(log)
	s, stop, err := start(context.Background(), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: starting the control plane and the webhook:", err)
		if stop != nil {
			stop()
		}
		return 1
	}
	s.logs = logs
	env = s
	code := m.Run()
	stop()
	return code
}

// start brings up the control plane and the webhook, registers the webhook
// and waits until the API server calls it. stop undoes whatever was done.
func start(ctx context.Context, log logr.Logger) (s *suite, stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	auditDir, err := os.MkdirTemp("", "policy-webhook-e2e-audit-")
	if err != nil {
		return nil, stop, fmt.Errorf("creating a directory for the audit log: %w", err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(auditDir) })
	auditPolicy, auditLog := filepath.Join(auditDir, "policy.yaml"), filepath.Join(auditDir, "audit.log")
	if err := os.WriteFile(auditPolicy, []byte(auditPolicyYAML), 0o600); err != nil {
		return nil, stop, fmt.Errorf("writing the audit policy: %w", err)
	}
	cp, err := devenv.StartControlPlane(ctx, devenv.ControlPlaneOptions{Log: log, APIServerFlags: map[string]string{
		"audit-policy-file": auditPolicy,
		"audit-log-path":    auditLog,
		// Each event is written before the request returns, so a test
		// reads the log of a request it has just made.
		"audit-log-mode": "blocking",
	}})
	if err != nil {
		return nil, stop, err
	}
	undo = append(undo, func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})
	if err := cp.EnsureNamespace(ctx, webhook.DefaultPolicyNamespace, nil); err != nil {
		return nil, stop, err
	}
	requests := &testenv.RequestLog{}
	wh, err := inprocess.Start(ctx, inprocess.Options{
		RestConfig: testenv.WithTransport(cp.Config, requests.Wrap),
		Log:        log.WithName("webhook"),
	})
	if err != nil {
		return nil, stop, err
	}
	undo = append(undo, func() {
		if err := wh.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := wh.WaitReady(startCtx); err != nil {
		return nil, stop, err
	}
	if err := devenv.Register(ctx, cp.Client, devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		return nil, stop, err
	}
	if err := devenv.WaitCalled(startCtx, cp.Client, wh.PolicyNamespace); err != nil {
		return nil, stop, err
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS = -1 // no client-side rate limit: the API server and the webhook are under test
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, stop, fmt.Errorf("building a clientset: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, stop, fmt.Errorf("building a dynamic client: %w", err)
	}
	return &suite{cp: cp, wh: wh, log: log, requests: requests, client: client, dyn: dyn, cfg: cfg, auditLog: auditLog}, stop, nil
}

// auditPolicyYAML records Pod and MyApple writes, with the webhooks' audit
// annotations (level Metadata has them), and nothing else.
const auditPolicyYAML = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update]
  resources:
  - group: ""
    resources: [pods]
  - group: stable.example.com
    resources: [myapples]
- level: None
`
