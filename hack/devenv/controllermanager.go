package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControllerManagerControllers are the kube-controller-manager controllers
// the local control plane runs: those that turn the Pod controllers
// (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs,
// ReplicationControllers) into Pods, the garbage collector, which deletes
// what they own when they are deleted, and the serviceaccount controller,
// which creates the ServiceAccount "default" in every namespace that the
// ServiceAccount admission plugin requires of every Pod. Nothing for nodes,
// volumes, Services or tokens: there are no nodes, so Pods stay Pending and
// a DaemonSet creates none.
var ControllerManagerControllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"replicationcontroller-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
}

// controllerManagerUser is the user kube-controller-manager reaches the
// API server as: the name a cluster's controller manager has, so audit
// logs and managedFields read as they would there, in system:masters
// rather than bound to the system:kube-controller-manager role, since the
// envtest API server authenticates it by a client certificate envtest
// issues and the role is a detail a test has no use for.
const controllerManagerUser = "system:kube-controller-manager"

// controllerManagerStartTimeout bounds the wait for its first controllers
// to act, on a loaded 2-core machine.
const controllerManagerStartTimeout = time.Minute

// controllerManagerLogKeep is how much of kube-controller-manager's output
// ControllerManagerLog keeps: the end, where a failure shows.
const controllerManagerLogKeep = 256 << 10

// controllerManager is a running kube-controller-manager.
type controllerManager struct {
	cmd  *exec.Cmd
	dir  string        // its kubeconfig's directory, removed at stop
	done chan struct{} // closed once cmd has exited and been reaped
	err  error         // cmd.Wait's error, set before done is closed
	log  *tailBuffer
	// stopping is set once stop has signalled it, so its exit then is
	// not reported as a failure.
	mu       sync.Mutex
	stopping bool
}

// startControllerManager starts kube-controller-manager from assets
// against the API server of env, as an admin user envtest adds, with
// ControllerManagerControllers, no leader election and no serving port,
// and waits until its serviceaccount controller has created the
// ServiceAccount "default" of namespace default: its informers have synced
// and its controllers run. Its output goes to out, if not nil, and its end
// is kept for ControllerManagerLog.
func startControllerManager(ctx context.Context, env *envtest.Environment, cs kubernetes.Interface, assets string, out io.Writer) (*controllerManager, error) {
	user, err := env.AddUser(envtest.User{Name: controllerManagerUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding a user for kube-controller-manager: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("rendering kube-controller-manager's kubeconfig: %w", err)
	}
	dir, err := os.MkdirTemp("", "policy-webhook-kcm-")
	if err != nil {
		return nil, fmt.Errorf("creating a directory for kube-controller-manager's kubeconfig: %w", err)
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("writing kube-controller-manager's kubeconfig: %w", err)
	}

	cm := &controllerManager{dir: dir, done: make(chan struct{}), log: newTailBuffer(controllerManagerLogKeep)}
	var w io.Writer = cm.log
	if out != nil {
		w = io.MultiWriter(cm.log, out)
	}
	cm.cmd = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfigPath,
		"--controllers="+strings.Join(ControllerManagerControllers, ","),
		// One controller manager per control plane: nothing to elect.
		"--leader-elect=false",
		// No HTTPS server (health, metrics): nothing reads them, and a
		// port of its own would be one more to find free.
		"--secure-port=0",
	)
	cm.cmd.Stdout, cm.cmd.Stderr = w, w
	cm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cm.cmd.SysProcAttr)
	if err := cm.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	go func() {
		cm.err = cm.cmd.Wait()
		close(cm.done)
	}()

	if err := cm.waitDefaultServiceAccount(ctx, cs, metav1.NamespaceDefault); err != nil {
		return nil, errors.Join(err, cm.stop())
	}
	return cm, nil
}

// waitDefaultServiceAccount waits until the serviceaccount controller has
// created the ServiceAccount "default" of namespace.
func (cm *controllerManager) waitDefaultServiceAccount(ctx context.Context, cs kubernetes.Interface, namespace string) error {
	err := PollEvery(ctx, 50*time.Millisecond, controllerManagerStartTimeout, func(ctx context.Context) error {
		select {
		case <-cm.done:
			return Final(fmt.Errorf("kube-controller-manager exited: %w", cm.err))
		default:
		}
		_, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("the serviceaccount controller has not created ServiceAccount %s/default yet", namespace)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-controller-manager to create ServiceAccount %s/default: %w; its output ends:\n%s",
			namespace, err, tail(cm.log.String(), 4000))
	}
	return nil
}

// exited returns the error of a kube-controller-manager that exited on its
// own, or nil while it runs or after stop.
func (cm *controllerManager) exited() error {
	select {
	case <-cm.done:
	default:
		return nil
	}
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if cm.stopping {
		return nil
	}
	why := cm.err
	if why == nil {
		why = errors.New("exit status 0")
	}
	return fmt.Errorf("kube-controller-manager exited on its own (%w); its output ends:\n%s", why, tail(cm.log.String(), 4000))
}

// stop terminates kube-controller-manager (SIGTERM, then SIGKILL after 20
// s) and removes its kubeconfig. It returns an error if it had exited on
// its own before.
func (cm *controllerManager) stop() error {
	err := cm.exited()
	cm.mu.Lock()
	cm.stopping = true
	cm.mu.Unlock()
	_ = cm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cm.done:
	case <-time.After(20 * time.Second):
		_ = cm.cmd.Process.Signal(syscall.SIGKILL)
		<-cm.done
	}
	if rerr := os.RemoveAll(cm.dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("removing kube-controller-manager's kubeconfig: %w", rerr))
	}
	return err
}

// ControllerManagerLog is the end of kube-controller-manager's output (the
// last 256 KiB), for a test to show when it fails; empty when the control
// plane runs none.
func (c *ControlPlane) ControllerManagerLog() string {
	if c.kcm == nil {
		return ""
	}
	return c.kcm.log.String()
}

// ControllerManagerDone is closed when kube-controller-manager exits, on
// its own or at Stop; nil (never ready) when the control plane runs none.
// ControllerManagerErr then says why.
func (c *ControlPlane) ControllerManagerDone() <-chan struct{} {
	if c.kcm == nil {
		return nil
	}
	return c.kcm.done
}

// ControllerManagerErr is the error of a kube-controller-manager that
// exited on its own, with the end of its output; nil while it runs, after
// Stop, or when the control plane runs none.
func (c *ControlPlane) ControllerManagerErr() error {
	if c.kcm == nil {
		return nil
	}
	return c.kcm.exited()
}

// tailBuffer is an io.Writer that keeps the last max bytes written.
type tailBuffer struct {
	mu   sync.Mutex
	keep int
	buf  []byte
}

func newTailBuffer(keep int) *tailBuffer { return &tailBuffer{keep: keep} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.keep; over > 0 {
		// Drop at least a quarter at a time so the copying is amortised.
		drop := max(over, b.keep/4)
		b.buf = append(b.buf[:0], b.buf[drop:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
