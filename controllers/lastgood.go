package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/policy"
)

// lastGoodMaxBytes is what a ConfigMap's data may hold in all.
const lastGoodMaxBytes = 1 << 20

// LastGood keeps cache.LastGoodConfigMap holding the last good version of
// every source whose newest version is invalid, so that a replica starting
// later enforces it too. It runs on the elected replica only.
type LastGood struct {
	w *writer
	// queue is non-nil while it runs; it holds one key, "write".
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[string]]
	// max bounds the entries' bytes: lastGoodMaxBytes but in tests.
	max int

	// Only the worker goroutine touches these.
	encoded map[policy.Source]encodedEntry
	// encodedWith is the key the encoded entries are signed with.
	encodedWith []byte
	leftOut     map[policy.Source]bool
	last        *lastGoodMemo
}

// NeedLeaderElection makes controller-runtime's manager run it on the
// elected replica only.
func (l *LastGood) NeedLeaderElection() bool { return true }

func (l *LastGood) enqueue() {
	if q := l.queue.Load(); q != nil {
		(*q).Add("write")
	}
}

// Start writes the ConfigMap once the cache has synced (whatever changed
// while another replica led), then after every snapshot, until ctx is done.
func (l *LastGood) Start(ctx context.Context) error {
	if !l.w.cfg.Cache.WaitForSync(ctx) {
		return nil
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "last-good"})
	l.encoded, l.leftOut, l.last = nil, nil, nil
	l.queue.Store(&q)
	defer l.queue.Store(nil)
	q.Add("write")
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	for {
		key, shutdown := q.Get()
		if shutdown || ctx.Err() != nil {
			return nil
		}
		err := l.sync(ctx, q)
		switch {
		case err == nil:
			q.Forget(key)
		case ctx.Err() != nil:
		default:
			l.w.log.Error(err, "Persisting the last good versions, will retry")
			q.AddRateLimited(key)
		}
		q.Done(key)
	}
}

// lastGoodMemo is what the leader last wrote, and from which version of
// the ConfigMap: until the informer delivers the write, a sync that wants
// the same again skips it.
type lastGoodMemo struct {
	from string
	data map[string]string
}

// encodedEntry is an entry the leader encoded, kept while the same
// version of the same object is the one to persist.
type encodedEntry struct {
	uid     types.UID
	version string
	value   string
}

// want is the data the ConfigMap should hold, an entry for each invalid
// source whose last good version is known, signed with key, within max
// bytes, and the sources left out for size. Entries this replica could not
// verify are not in it: the leader removes them.
func (l *LastGood) want(key []byte) (map[string]string, []policy.Source) {
	want := map[string]string{}
	encoded := map[policy.Source]encodedEntry{}
	if !bytes.Equal(l.encodedWith, key) {
		l.encoded, l.encodedWith = nil, key
	}
	for _, is := range l.w.cfg.Cache.InvalidSources() {
		if is.Good == nil {
			if is.Persisted != "" {
				// Verified when read; signed again if the key changed since.
				value, err := cache.ResignLastGood(key, is.Persisted)
				if err != nil {
					l.w.log.Error(err, "Cannot persist the last good version again", "source", is.Source.String())
					continue
				}
				want[cache.LastGoodKey(is.Source)] = value
			}
			continue
		}
		e, ok := l.encoded[is.Source]
		if !ok || e.uid != is.UID || e.version != is.Version {
			value, err := cache.EncodeLastGood(key, is.Source, is.UID, is.Version, is.Good)
			if err != nil {
				l.w.log.Error(err, "Cannot persist the last good version", "source", is.Source.String(), "version", is.Version)
				continue
			}
			e = encodedEntry{uid: is.UID, version: is.Version, value: value}
		}
		encoded[is.Source] = e
		want[cache.LastGoodKey(is.Source)] = e.value
	}
	l.encoded = encoded

	// Smallest first, so that one large policy leaves out only itself.
	keys := slices.SortedFunc(maps.Keys(want), func(a, b string) int {
		if d := len(want[a]) - len(want[b]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var left []policy.Source
	total := 0
	for _, k := range keys {
		if total+len(want[k]) > l.max {
			if e, err := cache.DecodeLastGood(want[k]); err == nil {
				left = append(left, e.Source())
			}
			delete(want, k)
			continue
		}
		total += len(want[k])
	}
	return want, left
}

// hasEntries reports whether an invalid source has a good version to
// persist: in memory, or read from the ConfigMap (verified with a key since
// deleted). With no key, none can be signed.
func (l *LastGood) hasEntries() bool {
	for _, is := range l.w.cfg.Cache.InvalidSources() {
		if is.Good != nil || is.Persisted != "" {
			return true
		}
	}
	return false
}

// ensureKey creates the Secret holding the key entries are signed with,
// with a random key, unless it exists. Only the leader creates it; every
// replica reads it through its informer.
func (l *LastGood) ensureKey(ctx context.Context) error {
	cfg := l.w.cfg
	key := make([]byte, cache.LastGoodKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("making the key of the last good versions: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name":      cache.LastGoodKeySecret,
			"namespace": cfg.PolicyNamespace,
			"labels":    map[string]any{"app.kubernetes.io/managed-by": eventComponent},
		},
		"type": "Opaque",
		"data": map[string]any{cache.LastGoodKeyData: base64.StdEncoding.EncodeToString(key)},
	}}
	_, err := cfg.Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(cfg.PolicyNamespace).
		Create(ctx, u, metav1.CreateOptions{FieldManager: FieldManager})
	switch {
	case apierrors.IsAlreadyExists(err):
		l.w.log.Info("The key of the last good versions exists but this replica cannot read it; waiting for it", "secret", cfg.PolicyNamespace+"/"+cache.LastGoodKeySecret)
	case err != nil:
		return fmt.Errorf("creating Secret %s/%s, the key of the last good versions: %w", cfg.PolicyNamespace, cache.LastGoodKeySecret, err)
	default:
		l.w.log.Info("Created the key the last good versions are signed with", "secret", cfg.PolicyNamespace+"/"+cache.LastGoodKeySecret)
	}
	return nil
}

// sync makes the ConfigMap hold what want says, if it does not already.
// The write is conditional on the cache's resourceVersion: a conflict is
// retried once the cache has caught up.
func (l *LastGood) sync(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) error {
	cfg := l.w.cfg
	key := cfg.Cache.LastGoodKey()
	if key == nil && l.hasEntries() {
		// Nothing can be persisted unsigned: make the key, and write once
		// the informer has it.
		if err := l.ensureKey(ctx); err != nil {
			return err
		}
		q.AddAfter("write", time.Second)
		return nil
	}
	want, left := l.want(key)
	leftOut := map[policy.Source]bool{}
	for _, src := range left {
		if !l.leftOut[src] {
			l.w.log.Error(nil, "The last good version of an invalid policy is not persisted: the ConfigMap holding them would exceed 1 MiB; a replica that restarts refuses what the policy matches instead",
				"source", src.String(), "configMap", cfg.PolicyNamespace+"/"+cache.LastGoodConfigMap)
		}
		leftOut[src] = true
	}
	l.leftOut = leftOut

	cur, exists := cfg.Cache.LastGoodConfigMap()
	var have map[string]string
	from := ""
	if exists {
		have, _, _ = unstructured.NestedStringMap(cur.Object, "data")
		from = cur.GetResourceVersion()
	}
	if maps.Equal(have, want) || (!exists && len(want) == 0) {
		return nil
	}
	if l.last != nil && l.last.from == from && maps.Equal(l.last.data, want) {
		return nil
	}

	client := cfg.Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(cfg.PolicyNamespace)
	data := make(map[string]any, len(want))
	for k, v := range want {
		data[k] = v
	}
	var err error
	if exists {
		u := cur.DeepCopy()
		u.Object["data"] = data
		_, err = client.Update(ctx, u, metav1.UpdateOptions{FieldManager: FieldManager})
	} else {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1",
			"kind":       "ConfigMap",
			"metadata": map[string]any{
				"name":      cache.LastGoodConfigMap,
				"namespace": cfg.PolicyNamespace,
				"labels":    map[string]any{"app.kubernetes.io/managed-by": eventComponent},
			},
			"data": data,
		}}
		_, err = client.Create(ctx, u, metav1.CreateOptions{FieldManager: FieldManager})
	}
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		// The informer delivering the change has this looked at again;
		// the delayed retry only guards against a change it never shows.
		l.w.log.V(1).Info("The last good versions changed under the leader; will write again once the cache has the change", "configMap", cache.LastGoodConfigMap)
		q.AddAfter("write", time.Second)
		return nil
	case err != nil:
		return fmt.Errorf("writing ConfigMap %s/%s: %w", cfg.PolicyNamespace, cache.LastGoodConfigMap, err)
	}
	l.last = &lastGoodMemo{from: from, data: want}
	l.w.log.Info("Last good versions of invalid policies persisted", "configMap", cfg.PolicyNamespace+"/"+cache.LastGoodConfigMap, "entries", len(want))
	return nil
}
