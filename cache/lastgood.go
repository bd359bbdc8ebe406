package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// A last good version survives restarts. A source whose newest version is
// invalid keeps its last good version in force, but only in the memory of
// the replicas that saw it; a replica that starts afterwards sees only the
// invalid version. So the elected replica writes, for each source whose
// newest version is invalid and whose last good version it knows, that
// version's document into one ConfigMap in the policy namespace, which
// every replica watches: a replica that knows no good version of an
// invalid source in memory enforces the one persisted there, if it belongs
// to the same object (same UID). A source with no good version known either
// way is covered by a stand-in (policy.StandIn) that refuses what it
// matches, rather than let the policy lapse.
//
// Only invalid sources have an entry, so the ConfigMap is empty in the
// normal case, is written only when a source turns invalid, is fixed or
// goes away, and stays within the 1 MiB a ConfigMap holds: entries that
// would not fit are left out (smallest first in), and logged.
const (
	// LastGoodConfigMap is the ConfigMap, in the policy namespace, that
	// holds the last good version of every invalid source.
	LastGoodConfigMap = "policy-webhook-last-good"
	// lastGoodMaxBytes is what a ConfigMap's data may hold in all.
	lastGoodMaxBytes = 1 << 20
	// lastGoodKind is the Kind of the queue key that has the leader
	// write the ConfigMap.
	lastGoodKind = "<last-good>"
)

// lastGoodEntry is one source's last good version, as stored under its key
// (lastGoodKey) in the ConfigMap: YAML, so that `kubectl get -o yaml`
// shows the policy as written.
type lastGoodEntry struct {
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	// Version is the good version's resourceVersion (ConfigMap) or
	// generation (AdmissionPolicy).
	Version string `json:"version"`
	// Policy is its document: policy.yaml, or the spec as JSON.
	Policy string `json:"policy"`
}

func (e *lastGoodEntry) source() policy.Source {
	return policy.Source{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}

// lastGoodKey is the data key of a source's entry: readable where it fits
// a ConfigMap key (253 characters of [-._a-zA-Z0-9]), which namespace and
// object names always are, else cut and made unique by a hash. Namespaces
// hold no dot, so kind.namespace.name names one source.
func lastGoodKey(src policy.Source) string {
	key := strings.ToLower(src.Kind) + "."
	if src.Namespace != "" {
		key += src.Namespace + "."
	}
	key += src.Name
	if len(key) <= 253 {
		return key
	}
	sum := sha256.Sum256([]byte(src.String()))
	return strings.TrimRight(key[:253-17], "-.") + "." + hex.EncodeToString(sum[:8])
}

// persistedGood is a compiled entry of the ConfigMap.
type persistedGood struct {
	uid   types.UID
	value string // the entry as stored, which the leader keeps as it is
	p     *policy.Policy
}

// lastGoodTable is what this replica read from the ConfigMap. The informer
// handler writes it; snapshot builds and the leader read it.
type lastGoodTable struct {
	mu sync.Mutex
	m  map[policy.Source]persistedGood
}

func newLastGoodTable() *lastGoodTable {
	return &lastGoodTable{m: map[policy.Source]persistedGood{}}
}

// lookup returns the persisted good version of a source, if it belongs to
// the object the source now is.
func (t *lastGoodTable) lookup(src policy.Source, uid types.UID) (*policy.Policy, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.m[src]
	if !ok || g.uid != uid {
		return nil, false
	}
	return g.p, true
}

func (t *lastGoodTable) get(src policy.Source) (persistedGood, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.m[src]
	return g, ok
}

func (c *Cache) lastGoodHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onLastGood(obj, false) },
		UpdateFunc: func(_, obj any) { c.onLastGood(obj, false) },
		DeleteFunc: func(obj any) { c.onLastGood(obj, true) },
	}
}

// onLastGood reads the ConfigMap anew: each entry is compiled once, when
// it first appears or changes. An entry that cannot be read is logged and
// left out: its source falls back to the stand-in.
func (c *Cache) onLastGood(obj any, deleted bool) {
	if _, name, ok := objectKey(obj); !ok || name != LastGoodConfigMap {
		return // the field selector keeps others out; a fake client may not
	}
	var data map[string]string
	if u, ok := obj.(*unstructured.Unstructured); ok && !deleted {
		data, _, _ = unstructured.NestedStringMap(u.Object, "data")
	}
	c.lastGood.mu.Lock()
	old := c.lastGood.m
	c.lastGood.mu.Unlock()
	next := make(map[policy.Source]persistedGood, len(data))
	for _, key := range slices.Sorted(maps.Keys(data)) {
		value := data[key]
		var e lastGoodEntry
		if err := yaml.UnmarshalStrict([]byte(value), &e); err != nil {
			c.log.Error(err, "Ignoring an entry of the last good versions that cannot be read", "configMap", LastGoodConfigMap, "key", key)
			continue
		}
		src := e.source()
		if (src.Kind != policy.SourceConfigMap && src.Kind != policy.SourceAdmissionPolicy) || key != lastGoodKey(src) {
			c.log.Error(nil, "Ignoring an entry of the last good versions that names no policy source, or another than its key", "configMap", LastGoodConfigMap, "key", key, "source", src.String())
			continue
		}
		if prev, ok := old[src]; ok && prev.value == value {
			next[src] = prev
			continue
		}
		p, err := carrier.CompileDocument(src, c.cfg.PolicyNamespace, e.Version, []byte(e.Policy))
		if err != nil {
			c.log.Error(err, "Ignoring a persisted last good version that does not compile", "configMap", LastGoodConfigMap, "key", key)
			continue
		}
		next[src] = persistedGood{uid: e.UID, value: value, p: p}
	}
	c.lastGood.mu.Lock()
	c.lastGood.m = next
	c.lastGood.mu.Unlock()
	c.log.V(1).Info("Persisted last good versions read", "entries", len(next))
	c.changed(time.Now())
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

// wantLastGood is the data the ConfigMap should hold: an entry for each
// source whose newest version is invalid and whose last good version is
// known, from memory or from the ConfigMap itself, within lastGoodMaxBytes.
// It returns the sources left out for size.
func (r *Reporter) wantLastGood() (map[string]string, []policy.Source) {
	c := r.c
	type memoryGood struct {
		src     policy.Source
		uid     types.UID
		version string
		good    *unstructured.Unstructured
	}
	var fromMemory []memoryGood
	want := map[string]string{}
	c.sources.mu.Lock()
	for src, st := range c.sources.m {
		switch {
		case st.err == nil:
		case st.inForce != nil && st.good != nil:
			fromMemory = append(fromMemory, memoryGood{src, st.uid, st.inForce.Version, st.good})
		default:
			if g, ok := c.lastGood.get(src); ok && g.uid == st.uid {
				want[lastGoodKey(src)] = g.value
			}
		}
	}
	c.sources.mu.Unlock()

	encoded := make(map[policy.Source]encodedEntry, len(fromMemory))
	for _, m := range fromMemory {
		e, ok := r.encoded[m.src]
		if !ok || e.uid != m.uid || e.version != m.version {
			value, err := encodeLastGood(m.src, m.uid, m.version, m.good)
			if err != nil {
				c.log.Error(err, "Cannot persist the last good version", "source", m.src.String(), "version", m.version)
				continue
			}
			e = encodedEntry{uid: m.uid, version: m.version, value: value}
		}
		encoded[m.src] = e
		want[lastGoodKey(m.src)] = e.value
	}
	r.encoded = encoded

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
		if total+len(want[k]) > r.lastGoodMax {
			var e lastGoodEntry
			if yaml.Unmarshal([]byte(want[k]), &e) == nil {
				left = append(left, e.source())
			}
			delete(want, k)
			continue
		}
		total += len(want[k])
	}
	return want, left
}

func encodeLastGood(src policy.Source, uid types.UID, version string, good *unstructured.Unstructured) (string, error) {
	_, doc, err := carrier.Document(good)
	if err != nil {
		return "", fmt.Errorf("reading the document of %s version %s: %w", src, version, err)
	}
	b, err := yaml.Marshal(lastGoodEntry{Kind: src.Kind, Namespace: src.Namespace, Name: src.Name, UID: uid, Version: version, Policy: string(doc)})
	if err != nil {
		return "", fmt.Errorf("encoding the last good version of %s: %w", src, err)
	}
	return string(b), nil
}

// syncLastGood makes the ConfigMap hold what wantLastGood says, writing
// only when that differs from what it holds. The write is conditional on
// the resourceVersion the cache holds: a conflict (the informer behind, or
// another leader for a moment) is retried once the cache has caught up.
func (r *Reporter) syncLastGood(ctx context.Context, q workqueue.TypedRateLimitingInterface[policy.Source]) error {
	c := r.c
	want, left := r.wantLastGood()
	for _, src := range left {
		if !r.leftOut[src] {
			c.log.Error(nil, "The last good version of an invalid policy is not persisted: the ConfigMap holding them would exceed 1 MiB; a replica that restarts refuses what the policy matches instead",
				"source", src.String(), "configMap", c.cfg.PolicyNamespace+"/"+LastGoodConfigMap)
		}
	}
	r.leftOut = map[policy.Source]bool{}
	for _, src := range left {
		r.leftOut[src] = true
	}

	obj, exists, err := c.lastGoodInformer.GetStore().GetByKey(c.cfg.PolicyNamespace + "/" + LastGoodConfigMap)
	if err != nil {
		return fmt.Errorf("reading ConfigMap %s/%s from the cache: %w", c.cfg.PolicyNamespace, LastGoodConfigMap, err)
	}
	var cur *unstructured.Unstructured
	var have map[string]string
	if exists {
		var ok bool
		if cur, ok = obj.(*unstructured.Unstructured); !ok {
			return fmt.Errorf("ConfigMap %s/%s in the cache is a %T", c.cfg.PolicyNamespace, LastGoodConfigMap, obj)
		}
		have, _, _ = unstructured.NestedStringMap(cur.Object, "data")
	}
	if maps.Equal(have, want) || (!exists && len(want) == 0) {
		return nil
	}
	from := ""
	if exists {
		from = cur.GetResourceVersion()
	}
	if r.lastGoodWritten != nil && r.lastGoodWritten.from == from && maps.Equal(r.lastGoodWritten.data, want) {
		return nil
	}

	client := c.cfg.Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(c.cfg.PolicyNamespace)
	data := make(map[string]any, len(want))
	for k, v := range want {
		data[k] = v
	}
	if exists {
		u := cur.DeepCopy()
		u.Object["data"] = data
		_, err = client.Update(ctx, u, metav1.UpdateOptions{FieldManager: fieldManager})
	} else {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1",
			"kind":       "ConfigMap",
			"metadata": map[string]any{
				"name":      LastGoodConfigMap,
				"namespace": c.cfg.PolicyNamespace,
				"labels":    map[string]any{"app.kubernetes.io/managed-by": eventComponent},
			},
			"data": data,
		}}
		_, err = client.Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager})
	}
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		// The informer delivering the change has this looked at again;
		// the delayed retry only guards against a change it never shows.
		c.log.V(1).Info("The last good versions changed under the leader; will write again once the cache has the change", "configMap", LastGoodConfigMap)
		q.AddAfter(policy.Source{Kind: lastGoodKind}, time.Second)
		return nil
	case err != nil:
		return fmt.Errorf("writing ConfigMap %s/%s: %w", c.cfg.PolicyNamespace, LastGoodConfigMap, err)
	}
	r.lastGoodWritten = &lastGoodMemo{from: from, data: want}
	c.log.Info("Last good versions of invalid policies persisted", "configMap", c.cfg.PolicyNamespace+"/"+LastGoodConfigMap, "entries", len(want))
	return nil
}

// logFallbacks logs, once each time it starts, an invalid source enforced
// by its persisted last good version or covered by its stand-in: the log
// line of the invalid version came before the snapshot knew which.
func (c *Cache) logFallbacks(prev, s *Snapshot) {
	for src, se := range s.Errors {
		was, ok := prev.Errors[src]
		if ok && was.Version == se.Version && was.Restored == se.Restored && was.StandIn == se.StandIn && was.InForce == se.InForce {
			continue
		}
		switch {
		case se.Restored:
			c.log.Info("Invalid policy: its persisted last good version is in force", "source", src.String(), "version", se.Version, "inForce", se.InForce,
				"configMap", c.cfg.PolicyNamespace+"/"+LastGoodConfigMap)
		case se.StandIn != "":
			c.log.Info("Invalid policy with no good version known: what it matches is judged by its stand-in", "source", src.String(), "version", se.Version,
				"enforcement", se.StandIn)
		}
	}
}
