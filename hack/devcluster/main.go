// Command devcluster runs a local control plane with the webhook registered,
// for development and demos: kube-apiserver and etcd (through envtest) with
// the CRDs installed, kube-controller-manager with the controllers that turn
// Deployments, Jobs and the other Pod controllers into Pods (which stay
// Pending: there is no scheduler and no node), the webhook in process over
// TLS with a throwaway CA, and a ValidatingWebhookConfiguration that points
// the API server at it.
//
// It writes an admin kubeconfig (.dev/kubeconfig by default), prints the line
// "ready" on stdout once the API server calls the webhook and its caches have
// synced, and serves until SIGINT or SIGTERM. Logs go to stderr. It applies
// no policy and no object: the cluster starts empty but for the webhook's own
// namespace. It is not part of the production binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/inprocess"
	"github.com/policy-webhook/policy-webhook/webhook"
)

type options struct {
	kubeconfigOut   string
	crdDir          string
	policyNamespace string
	startupTimeout  time.Duration
	verbose         bool
	reportCRDDir    string
	auditInterval   time.Duration
	kcm             bool
	kcmLog          string
}

func main() {
	var o options
	flag.StringVar(&o.kubeconfigOut, "kubeconfig-out", ".dev/kubeconfig", "where to write the admin kubeconfig (removed on exit)")
	flag.StringVar(&o.crdDir, "crd-dir", "manifests/crds", "directory of the CRD manifests to install")
	flag.StringVar(&o.policyNamespace, "policy-namespace", webhook.DefaultPolicyNamespace, "the webhook's namespace, whose policy ConfigMaps apply cluster-wide")
	flag.DurationVar(&o.startupTimeout, "startup-timeout", 2*time.Minute, "how long the control plane and the webhook may take to come up")
	flag.StringVar(&o.reportCRDDir, "report-crd-dir", "manifests/components/openreports", "directory of the report CRDs the audit writes into (manifests/components/policyreports with --report-format=wgpolicyk8s among the webhook's arguments); empty: not installed")
	flag.DurationVar(&o.auditInterval, "audit-interval", 5*time.Second, "how often the webhook audits the existing objects into reports (kubectl get reports -A); 0: no audit")
	flag.BoolVar(&o.kcm, "controller-manager", true, "run kube-controller-manager, so Deployments, Jobs and the other Pod controllers create Pods")
	flag.StringVar(&o.kcmLog, "controller-manager-log", ".dev/kube-controller-manager.log", "where kube-controller-manager's log goes (truncated at start)")
	flag.BoolVar(&o.verbose, "v", false, "debug logs")
	flag.Parse()

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// controller-runtime and client-go log through these; without them
	// controller-runtime complains on stderr that no logger was set.
	ctrllog.SetLogger(log)
	klog.SetLogger(log)

	dieWithParent()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, stop, o, log)
	if err != nil {
		log.Error(err, "devcluster failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, stopSignals context.CancelFunc, o options, log logr.Logger) (err error) {
	var extra []string
	if o.reportCRDDir != "" {
		extra = append(extra, o.reportCRDDir)
	}
	cpOpts := devenv.ControlPlaneOptions{CRDDir: o.crdDir, ExtraCRDDirs: extra, Log: log, ControllerManager: o.kcm}
	if o.kcm {
		kcmLog, err := createLog(o.kcmLog)
		if err != nil {
			return err
		}
		defer kcmLog.Close()
		cpOpts.ControllerManagerOutput = kcmLog
		log.Info("kube-controller-manager's log goes to a file", "path", o.kcmLog)
	}
	cp, err := devenv.StartControlPlane(ctx, cpOpts)
	if err != nil {
		return err
	}
	defer func() {
		log.Info("stopping the control plane")
		err = errors.Join(err, cp.Stop())
	}()

	// The webhook's own namespace is the one object devcluster creates:
	// cluster-wide policy ConfigMaps live there and the webhook watches it.
	if err := cp.EnsureNamespace(ctx, o.policyNamespace, nil); err != nil {
		return err
	}
	log.Info("created the webhook's namespace (the only object applied; no policy, no sample)", "namespace", o.policyNamespace)

	wh, err := inprocess.Start(ctx, inprocess.Options{
		RestConfig:      cp.Config,
		PolicyNamespace: o.policyNamespace,
		AuditInterval:   o.auditInterval,
		Log:             log.WithName("webhook"),
	})
	if err != nil {
		return err
	}
	defer func() {
		log.Info("stopping the webhook")
		if serr := wh.Stop(); serr != nil && !errors.Is(serr, context.Canceled) {
			err = errors.Join(err, serr)
		}
	}()

	startCtx, cancel := context.WithTimeout(ctx, o.startupTimeout)
	defer cancel()
	if err := wh.WaitReady(startCtx); err != nil {
		return err
	}
	log.Info("webhook ready: informers synced, certificate loaded", "url", wh.URL, "health", wh.HealthAddr, "metrics", wh.MetricsAddr)

	vwc := devenv.WebhookConfiguration(wh.URL, wh.CA.CertPEM(), o.policyNamespace)
	if err := devenv.Register(ctx, cp.Client, vwc); err != nil {
		return err
	}
	if err := devenv.WaitCalled(startCtx, cp.Client, o.policyNamespace); err != nil {
		return err
	}
	log.Info("API server calls the webhook", "validatingwebhookconfiguration", vwc.Name)

	if err := cp.WriteKubeConfig(o.kubeconfigOut); err != nil {
		return err
	}
	defer func() {
		if rerr := os.Remove(o.kubeconfigOut); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("removing %s: %w", o.kubeconfigOut, rerr))
		}
	}()
	log.Info("kubeconfig written; Ctrl-C to stop", "path", o.kubeconfigOut,
		"try", fmt.Sprintf("%s --kubeconfig %s get validatingwebhookconfigurations", cp.KubectlPath(), o.kubeconfigOut))
	fmt.Println("ready")

	select {
	case <-ctx.Done():
		// A second signal now kills the process outright.
		stopSignals()
		log.Info("signal received, shutting down")
		return nil
	case <-wh.Done():
		return fmt.Errorf("the webhook stopped on its own: %w", wh.Err())
	case <-cp.ControllerManagerDone(): // nil, never ready, without one
		return fmt.Errorf("%w (full log in %s)", cp.ControllerManagerErr(), o.kcmLog)
	}
}

// createLog creates (or truncates) path for a log, with its directory.
func createLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return f, nil
}
