package e2e

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/policy-webhook/policy-webhook/test/inprocess"
	"github.com/policy-webhook/policy-webhook/test/testenv"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// env is the control plane and webhook all tests share: starting them takes
// seconds, so TestMain does it once, and each test isolates itself in
// namespaces of its own. It is set once, before any test runs.
var env *suite

type suite struct {
	cp  *testenv.ControlPlane
	wh  *inprocess.Webhook
	log logr.Logger
	// requests records every request the shared webhook makes to the API server.
	requests *testenv.RequestLog
	// client and dyn are admin clients without client-side rate limits.
	client kubernetes.Interface
	dyn    dynamic.Interface
	// cfg is the admin config they are built from.
	cfg *rest.Config
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(testenv.AssetsEnv) == "" {
		if testing.Short() {
			fmt.Println("e2e: skipped in -short mode: " + testenv.ErrNoAssets.Error())
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "FAIL: the end-to-end tests need a local control plane: "+testenv.ErrNoAssets.Error())
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// go test shows this output only for a failing package (or with -v).
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
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
	cp, err := testenv.StartControlPlane(ctx, testenv.ControlPlaneOptions{Log: log})
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
	if err := testenv.Register(ctx, cp.Client, testenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), wh.PolicyNamespace)); err != nil {
		return nil, stop, err
	}
	if err := testenv.WaitCalled(startCtx, cp.Client, wh.PolicyNamespace); err != nil {
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
	return &suite{cp: cp, wh: wh, log: log, requests: requests, client: client, dyn: dyn, cfg: cfg}, stop, nil
}
