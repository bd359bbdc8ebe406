package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/certs"
	"github.com/policy-webhook/policy-webhook/cmd/policy-webhook/app"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/test/testenv"
)

// Lease timings short enough for a failover within the test, long enough
// for a loaded 2-core machine not to lose a lease by accident.
const (
	testLeaseDuration     = 4 * time.Second
	testRenewDeadline     = 3 * time.Second
	testRetryPeriod       = 250 * time.Millisecond
	testHeartbeatInterval = 500 * time.Millisecond
	replicaPolicyNS       = "policy-system"
)

// replica is one in-process app.Run with leader election.
type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	// url is where it serves (https://127.0.0.1:<port>); client trusts
	// its serving certificate.
	url    string
	client *http.Client
}

// startReplica starts a replica; edits change its options (an audit
// interval, a transport that records its requests, a registry to read).
func startReplica(t *testing.T, cp *devenv.ControlPlane, name string, edits ...func(*app.Options)) *replica {
	t.Helper()
	return startReplicaAs(t, cp.Config, name, edits...)
}

// startReplicaAs starts a replica whose connection to the API server is
// cfg: the ServiceAccount's, to run with the install's RBAC.
func startReplicaAs(t *testing.T, cfg *rest.Config, name string, edits ...func(*app.Options)) *replica {
	t.Helper()
	certDir := t.TempDir()
	ca, err := certs.NewCA("replicas test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKeyPair(certDir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	port, err := devenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	r := &replica{
		name: name, cancel: cancel, done: make(chan error, 1),
		url:    fmt.Sprintf("https://127.0.0.1:%d", port),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	}
	ready := make(chan struct{})
	opts := app.Options{
		RestConfig:        cfg,
		PolicyNamespace:   replicaPolicyNS,
		Host:              "127.0.0.1",
		Port:              port,
		CertDir:           certDir,
		ReplicaName:       name,
		LeaderElection:    true,
		LeaseDuration:     testLeaseDuration,
		RenewDeadline:     testRenewDeadline,
		RetryPeriod:       testRetryPeriod,
		HeartbeatInterval: testHeartbeatInterval,
		// Two servers in one process: a registry each.
		MetricsRegistry: prometheus.NewRegistry(),
		Log:             testr.NewWithOptions(t, testr.Options{Verbosity: 0}).WithName(name),
		OnReady:         func() { close(ready) },
	}
	for _, edit := range edits {
		edit(&opts)
	}
	go func() { r.done <- app.Run(ctx, opts) }()
	t.Cleanup(func() { r.stop(t) })
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("replica %s stopped before it was ready: %v", name, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("replica %s not ready within 60s", name)
	}
	return r
}

// stop stops the replica, once, and checks that Run returned cleanly.
func (r *replica) stop(t *testing.T) {
	r.once.Do(func() {
		r.client.CloseIdleConnections()
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("replica %s: %v", r.name, err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("replica %s did not stop within 60s", r.name)
		}
	})
}

// Two replicas against one control plane, with no webhook registered, so
// that invalid policies can be written: both report the generation they
// enforce in status.replicas, only the leader writes Events and the Ready
// condition (one Event per invalid version, not one per replica), and when
// the leader stops the other takes over, writes, and prunes the stopped
// replica's entry.
func TestTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local control plane (envtest); runs without -short")
	}
	ctx := t.Context()
	cp := testenv.ControlPlaneForTest(t, devenv.ControlPlaneOptions{Log: testr.New(t)})
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	for _, ns := range []string{replicaPolicyNS, "team-a"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	replicas := map[string]*replica{}
	for _, name := range []string{"replica-a", "replica-b"} {
		replicas[name] = startReplica(t, cp, name)
	}

	aps := dyn.Resource(v1alpha1.Resource)
	getAP := func(name string) (*unstructured.Unstructured, v1alpha1.AdmissionPolicyStatus) {
		t.Helper()
		u, err := aps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting AdmissionPolicy %s: %v", name, err)
		}
		var st v1alpha1.AdmissionPolicyStatus
		if raw, ok := u.Object["status"].(map[string]any); ok {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
				t.Fatalf("decoding the status of %s: %v", name, err)
			}
		}
		return u, st
	}
	// statusIs reports whether the entries are exactly those of the
	// replicas named, each at generation gen, enforcing it (inForce) or
	// having refused it, and the leader's part of the status agrees.
	statusIs := func(name string, gen int64, inForce bool, names ...string) func() bool {
		return func() bool {
			_, st := getAP(name)
			if len(st.Replicas) != len(names) || st.ObservedGeneration != gen {
				return false
			}
			for _, r := range st.Replicas {
				if !slices.Contains(names, r.Name) || r.ObservedGeneration != gen || r.InForce != inForce {
					return false
				}
			}
			ready := apimeta.FindStatusCondition(st.Conditions, controllers.ConditionReady)
			want := "0/" + fmt.Sprint(len(names))
			if inForce {
				want = fmt.Sprintf("%d/%d", len(names), len(names))
			}
			return ready != nil && ready.ObservedGeneration == gen && (ready.Status == metav1.ConditionTrue) == inForce && st.InForce == want
		}
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		// The limit only turns a hang into a failure.
		err := devenv.Poll(ctx, 60*time.Second, func(context.Context) error {
			if cond() {
				return nil
			}
			return errors.New("not yet")
		})
		if err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
	}
	// warnings counts the InvalidPolicy Events on one object, by UID.
	warnings := func(namespace string, uid types.UID) int {
		t.Helper()
		list, err := kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(uid)})
		if err != nil {
			t.Fatalf("listing Events: %v", err)
		}
		n := 0
		for _, e := range list.Items {
			if e.Reason == controllers.ReasonInvalidPolicy && e.Type == corev1.EventTypeWarning {
				n++
			}
		}
		return n
	}

	// An edit shows both replicas at the new generation.
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": "trusted"},
		"spec":     map[string]any{"pods": map[string]any{"allowedRegistries": []any{"registry.example.com/"}}},
	}}
	if _, err := aps.Create(ctx, ap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("both replicas enforce generation 1", statusIs("trusted", 1, true, "replica-a", "replica-b"))
	// setSpec updates a policy's spec, retrying when a status write moved
	// its resourceVersion on in between.
	setSpec := func(name string, spec map[string]any) *unstructured.Unstructured {
		t.Helper()
		var out *unstructured.Unstructured
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, _ := getAP(name)
			cur.Object["spec"] = spec
			var err error
			out, err = aps.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatalf("updating AdmissionPolicy %s: %v", name, err)
		}
		return out
	}
	setSpec("trusted", map[string]any{"pods": map[string]any{"allowedRegistries": []any{"docker.io/"}}})
	poll("both replicas enforce generation 2", statusIs("trusted", 2, true, "replica-a", "replica-b"))
	u, st := getAP("trusted")
	for _, r := range st.Replicas {
		if r.LastTransitionTime.IsZero() || r.Message != "" {
			t.Errorf("entry %+v: want the time it took effect and no message", r)
		}
	}
	// Each entry belongs to its replica's field manager, the rest to the leader's.
	managers := map[string]bool{}
	for _, mf := range u.GetManagedFields() {
		if mf.Subresource == "status" && mf.Operation == metav1.ManagedFieldsOperationApply {
			managers[mf.Manager] = true
		}
	}
	for _, m := range []string{"policy-webhook", controllers.ReplicaFieldManager("replica-a"), controllers.ReplicaFieldManager("replica-b")} {
		if !managers[m] {
			t.Errorf("status managers %v lack %s", managers, m)
		}
	}

	// Invalid versions, written while no webhook is registered: both
	// replicas keep generation 2 in force, and each object gets one Event.
	ap = setSpec("trusted", map[string]any{"pods": map[string]any{"allowedRegistries": []any{"https://registry.example.com/"}}})
	cm, err := kube.CoreV1().ConfigMaps("team-a").Create(ctx, devenv.PolicyConfigMap("team-a", "broken",
		"pods:\n  allowedRegistries: [\"https://x.example.com/\"]\n"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll("both replicas refuse generation 3", statusIs("trusted", 3, false, "replica-a", "replica-b"))
	poll("an Event on each invalid object", func() bool {
		return warnings("default", ap.GetUID()) > 0 && warnings("team-a", cm.GetUID()) > 0
	})
	_, st = getAP("trusted")
	for _, r := range st.Replicas {
		if r.Message != "generation 3 is invalid (generation 2 stays in force)" {
			t.Errorf("entry of %s: message %q", r.Name, r.Message)
		}
	}

	// The leader is whoever holds the Lease; stop it.
	lease, err := kube.CoordinationV1().Leases(replicaPolicyNS).Get(ctx, app.DefaultLeaderElectionID, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the leader Lease: %v", err)
	}
	leader := *lease.Spec.HolderIdentity
	other := "replica-a"
	if leader == other {
		other = "replica-b"
	}
	if replicas[leader] == nil {
		t.Fatalf("the Lease is held by %q, no replica of this test", leader)
	}
	stoppedAt := time.Now()
	replicas[leader].stop(t)
	t.Logf("stopped the leader %s", leader)

	// The other takes over: it writes what changes next (a new policy's
	// Ready, its Event, which needs the leader) and prunes the stopped
	// replica's entry once its heartbeat is gone.
	poll("the other replica holds the Lease", func() bool {
		l, err := kube.CoordinationV1().Leases(replicaPolicyNS).Get(ctx, app.DefaultLeaderElectionID, metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == other
	})
	t.Logf("%s leads %v after the leader stopped", other, time.Since(stoppedAt).Round(time.Millisecond))
	later := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AdmissionPolicy",
		"metadata": map[string]any{"name": "later"},
		"spec":     map[string]any{"pods": map[string]any{"allowedRegistries": []any{"ftp://nope/"}}},
	}}
	if later, err = aps.Create(ctx, later, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("the new leader reports the new policy", statusIs("later", 1, false, other))
	poll("an Event on the new invalid policy", func() bool { return warnings("default", later.GetUID()) == 1 })
	poll("the stopped replica's entry is pruned", statusIs("trusted", 3, false, other))
	t.Logf("entry of %s pruned %v after it stopped", leader, time.Since(stoppedAt).Round(time.Millisecond))

	// The new leader walked every source when elected, and found each
	// invalid version's Event already written: still one per object.
	if n := warnings("default", ap.GetUID()); n != 1 {
		t.Errorf("%d Warning Events on AdmissionPolicy trusted, want 1", n)
	}
	if n := warnings("team-a", cm.GetUID()); n != 1 {
		t.Errorf("%d Warning Events on ConfigMap team-a/broken, want 1", n)
	}
	list, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(ap.GetUID())})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if !strings.Contains(e.Message, "generation 3 is invalid") || !strings.Contains(e.Message, "generation 2 stays in force") || e.Source.Component != "policy-webhook" {
			t.Errorf("Event %q from %+v", e.Message, e.Source)
		}
	}

	// The stopped replica deleted its heartbeat Lease on the way out.
	if _, err = kube.CoordinationV1().Leases(replicaPolicyNS).Get(ctx, "policy-webhook-replica-"+leader, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("heartbeat Lease of the stopped replica: err %v, want NotFound", err)
	}
}
