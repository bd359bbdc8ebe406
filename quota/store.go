package quota

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// LedgerPrefix names a namespace's ledger ConfigMap, in the webhook's namespace.
	LedgerPrefix = "policy-webhook-quota-"
	// LedgerKey is the ledger's data key.
	LedgerKey = "reservations.json"
	// NamespaceLabel on a ledger names the namespace it accounts for.
	NamespaceLabel = "policy-webhook.io/quota-namespace"
)

// Reservation is a quantity reserved for one MyApple. It counts until the
// cache holds the MyApple at a version after Replaces (or saw it deleted),
// or until TTL after At.
type Reservation struct {
	UID      string `json:"uid"`
	Name     string `json:"name"`
	Quantity int64  `json:"quantity"`
	// Replaces is the resourceVersion of the MyApple an UPDATE replaces;
	// empty for a CREATE.
	Replaces string    `json:"replaces,omitempty"`
	At       time.Time `json:"at"`
}

type ledgerData struct {
	Reservations []Reservation `json:"reservations"`
}

// load reads a namespace's ledger into acc; one not created yet is empty.
func (l *Ledger) load(ctx context.Context, namespace string, acc *account) error {
	cm, err := l.opts.Client.CoreV1().ConfigMaps(l.opts.Namespace).Get(ctx, LedgerPrefix+namespace, metav1.GetOptions{})
	rs := []Reservation{}
	switch {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		return err
	default:
		if rs, err = decode(cm); err != nil {
			return err
		}
	}
	acc.cm, acc.loaded = cm, true
	acc.reserved.Store(&rs)
	return nil
}

// write creates or updates the ledger, failing if another writer was first.
func (l *Ledger) write(ctx context.Context, namespace string, acc *account, rs []Reservation) error {
	data, err := json.Marshal(ledgerData{Reservations: rs})
	if err != nil {
		return err
	}
	var out *corev1.ConfigMap
	cms := l.opts.Client.CoreV1().ConfigMaps(l.opts.Namespace)
	if acc.cm == nil {
		out, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: LedgerPrefix + namespace, Namespace: l.opts.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "policy-webhook", NamespaceLabel: namespace},
			},
			Data: map[string]string{LedgerKey: string(data)},
		}, metav1.CreateOptions{FieldManager: "policy-webhook"})
	} else {
		cm := acc.cm.DeepCopy()
		cm.Data = map[string]string{LedgerKey: string(data)}
		out, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "policy-webhook"})
	}
	if err != nil {
		return err
	}
	acc.cm = out
	acc.reserved.Store(&rs)
	return nil
}

// retriable errors mean another writer got there first.
func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
}

// decode reads a ledger. One that cannot be read is an error, not an empty
// ledger: forgetting reservations would let a namespace past its limit.
func decode(cm *corev1.ConfigMap) ([]Reservation, error) {
	raw, ok := cm.Data[LedgerKey]
	if !ok {
		return nil, fmt.Errorf("data key %s is missing (delete the ConfigMap to start the ledger afresh)", LedgerKey)
	}
	var d ledgerData
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return nil, fmt.Errorf("data key %s: %w (delete the ConfigMap to start the ledger afresh)", LedgerKey, err)
	}
	return slices.Clip(d.Reservations), nil
}
