package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AssetsEnv names the directory holding kube-apiserver, etcd and kubectl.
// The Makefile exports it to the tools cache that `make tools` fills.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// ErrNoAssets is returned when AssetsEnv is unset: without binaries there is
// no control plane, and the fix is always the same make target.
var ErrNoAssets = errors.New(AssetsEnv + " is not set: run `make tools` (or `make test`, `make run`), " +
	"which builds kube-apiserver, etcd and kubectl into the tools cache and exports " + AssetsEnv)

// kubeconfigName names the cluster, user and context of written kubeconfigs.
const kubeconfigName = "policy-webhook-dev"

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// CRDDir holds the CRD manifests to install. Empty means manifests/crds
	// under the repository root found from the working directory.
	CRDDir string
	// ExtraCRDDirs hold more CRDs to install beside the project's, such as
	// cert-manager's for the install proofs.
	ExtraCRDDirs []string
	// Log receives progress messages.
	Log logr.Logger
	// APIServerFlags are extra kube-apiserver flags, name (without
	// dashes) to value, such as admission-control-config-file.
	APIServerFlags map[string]string
	// ControllerManager also starts kube-controller-manager with
	// ControllerManagerControllers, so that Deployments, Jobs and the
	// other Pod controllers create Pods (which stay Pending: there is no
	// scheduler and no node). As in a cluster, the API server's
	// ServiceAccount admission plugin is then on (envtest turns it off, as
	// nothing would create the ServiceAccounts it requires), and the
	// serviceaccount controller creates "default" in every namespace.
	// Off by default: it costs a process and a second or two at start.
	ControllerManager bool
	// ControllerManagerOutput receives kube-controller-manager's log as
	// it is written, such as a file; nil: only the end is kept, for
	// ControlPlane.ControllerManagerLog.
	ControllerManagerOutput io.Writer
}

// ControlPlane is a running kube-apiserver and etcd with the CRDs installed.
type ControlPlane struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Client is a clientset built from Config.
	Client kubernetes.Interface

	env *envtest.Environment
	kcm *controllerManager // nil unless ControllerManager

	// mu guards the kube-apiserver StopAPIServer and StartAPIServer manage.
	mu        sync.Mutex
	apiserver *apiServer
	envPID    int
}

// StartControlPlane starts etcd and kube-apiserver from the binaries in
// $KUBEBUILDER_ASSETS and installs the CRDs. Stop it with Stop.
func StartControlPlane(ctx context.Context, opts ControlPlaneOptions) (*ControlPlane, error) {
	assets := os.Getenv(AssetsEnv)
	if assets == "" {
		return nil, ErrNoAssets
	}
	bins := []string{"kube-apiserver", "etcd"}
	if opts.ControllerManager {
		bins = append(bins, "kube-controller-manager")
	}
	for _, bin := range bins {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("looking for %s in %s=%s (run `make tools`): %w", bin, AssetsEnv, assets, err)
		}
	}
	crdDir := opts.CRDDir
	if crdDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		crdDir = filepath.Join(root, "manifests", "crds")
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{crdDir}, opts.ExtraCRDDirs...),
		ErrorIfCRDPathMissing: true,
	}
	if opts.ControllerManager {
		// envtest passes --disable-admission-plugins=ServiceAccount; with
		// the serviceaccount controller running, kube-apiserver's own
		// default (ServiceAccount on) holds, as in a cluster. An
		// APIServerFlags entry still wins.
		env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
	for name, value := range opts.APIServerFlags {
		env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	opts.Log.Info("starting etcd and kube-apiserver", "assets", assets, "crds", env.CRDDirectoryPaths)
	cfg, err := env.Start()
	if err != nil {
		// Start may have left etcd running when a later step failed.
		_ = env.Stop()
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("building a clientset for the control plane: %w", err)
	}
	cp := &ControlPlane{Config: cfg, Client: cs, env: env}
	if opts.ControllerManager {
		opts.Log.Info("starting kube-controller-manager", "controllers", ControllerManagerControllers)
		if cp.kcm, err = startControllerManager(ctx, env, cs, assets, opts.ControllerManagerOutput); err != nil {
			return nil, errors.Join(err, env.Stop())
		}
	}
	opts.Log.Info("control plane up", "server", cfg.Host, "crds", cp.CRDs(), "controllerManager", opts.ControllerManager)
	return cp, nil
}

// CRDs names the CRDs installed.
func (c *ControlPlane) CRDs() []string {
	var names []string
	for _, crd := range c.env.CRDs {
		names = append(names, crd.Name)
	}
	return names
}

// Stop stops kube-controller-manager, kube-apiserver and etcd and removes
// their data directories. It reports a kube-controller-manager that had
// exited on its own.
func (c *ControlPlane) Stop() error {
	var err error
	if c.kcm != nil {
		err = c.kcm.stop()
	}
	c.stopRestarted()
	if serr := c.env.Stop(); serr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the control plane: %w", serr))
	}
	return err
}

// KubectlPath is the kubectl binary next to the control plane's binaries.
func (c *ControlPlane) KubectlPath() string {
	return filepath.Join(c.env.BinaryAssetsDirectory, "kubectl")
}

// KubeConfig renders an admin kubeconfig for the control plane, with the
// client certificate and CA inlined so the file stands alone.
func (c *ControlPlane) KubeConfig() ([]byte, error) {
	return KubeConfigFor(c.Config)
}

// KubeConfigFor renders a kubeconfig that reaches the API server as cfg
// does, with its certificates inlined, for kubectl and scripts.
func KubeConfigFor(cfg *rest.Config) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[kubeconfigName] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kctx := clientcmdapi.NewContext()
	kctx.Cluster = kubeconfigName
	kctx.AuthInfo = kubeconfigName
	kc.Contexts[kubeconfigName] = kctx
	kc.CurrentContext = kubeconfigName
	out, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("rendering the kubeconfig: %w", err)
	}
	return out, nil
}

// WriteKubeConfig writes KubeConfig to path (mode 0600, it holds a key),
// creating the parent directory.
func (c *ControlPlane) WriteKubeConfig(path string) error {
	data, err := c.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	// Write then rename so a reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("moving the kubeconfig to %s: %w", path, err)
	}
	return nil
}

// EnsureNamespace creates a namespace unless it exists. With
// kube-controller-manager, it returns once the namespace has its
// ServiceAccount "default", without which the ServiceAccount admission
// plugin refuses Pods (after retrying for a second or two only).
func (c *ControlPlane) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	if c.kcm != nil {
		return c.kcm.waitDefaultServiceAccount(ctx, c.Client, name)
	}
	return nil
}

// AddUser is a client configuration for another user of the control plane,
// in groups (system:masters for a cluster-admin): a user the webhook,
// which runs as the admin of Config, does not take for itself.
func (c *ControlPlane) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, c.Config)
	if err != nil {
		return nil, fmt.Errorf("adding user %s to the control plane: %w", name, err)
	}
	return u.Config(), nil
}
