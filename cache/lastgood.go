package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// LastGoodConfigMap is the ConfigMap, in the policy namespace, that holds
// the last good version of every invalid source, so that a replica starting
// after the source turned invalid enforces it too (if it belongs to the same
// object, same UID). Only invalid sources have an entry, so it is written
// only when one turns invalid, is fixed or goes away.
const LastGoodConfigMap = "policy-webhook-last-good"

// LastGoodEntry is one source's last good version, as stored under its key
// (lastGoodKey) in the ConfigMap: YAML, so that `kubectl get -o yaml`
// shows the policy as written.
type LastGoodEntry struct {
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

func (e *LastGoodEntry) Source() policy.Source {
	return policy.Source{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}

// LastGoodKey is the data key of a source's entry: readable where it fits
// a ConfigMap key (253 characters of [-._a-zA-Z0-9]), which namespace and
// object names always are, else cut and made unique by a hash. Namespaces
// hold no dot, so kind.namespace.name names one source.
func LastGoodKey(src policy.Source) string {
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
		e, err := DecodeLastGood(value)
		if err != nil {
			c.log.Error(err, "Ignoring an entry of the last good versions that cannot be read", "configMap", LastGoodConfigMap, "key", key)
			continue
		}
		src := e.Source()
		if (src.Kind != policy.SourceConfigMap && src.Kind != policy.SourceAdmissionPolicy) || key != LastGoodKey(src) {
			c.log.Error(nil, "Ignoring an entry of the last good versions that names no policy source, or another than its key", "configMap", LastGoodConfigMap, "key", key, "source", src.String())
			continue
		}
		if prev, ok := old[src]; ok && prev.value == value {
			next[src] = prev
			continue
		}
		p, err := c.compiler.CompileDocument(src, c.cfg.PolicyNamespace, e.Version, []byte(e.Policy))
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

// InvalidSource is a source whose newest version is invalid, with what
// is known of its last good version.
type InvalidSource struct {
	Source policy.Source
	UID    types.UID
	// Version and Good are the version in force and its object, when this
	// replica has seen one; Good is nil otherwise.
	Version string
	Good    *unstructured.Unstructured
	// Persisted is the entry read from LastGoodConfigMap for this object,
	// "" if none.
	Persisted string
}

// InvalidSources lists the sources whose newest version is invalid.
func (c *Cache) InvalidSources() []InvalidSource {
	c.sources.mu.Lock()
	var out []InvalidSource
	for src, st := range c.sources.m {
		if st.err == nil {
			continue
		}
		is := InvalidSource{Source: src, UID: st.uid}
		if st.inForce != nil && st.good != nil {
			is.Version, is.Good = st.inForce.Version, st.good
		}
		out = append(out, is)
	}
	c.sources.mu.Unlock()
	for i := range out {
		if g, ok := c.lastGood.get(out[i].Source); ok && g.uid == out[i].UID {
			out[i].Persisted = g.value
		}
	}
	return out
}

// EncodeLastGood is the entry of LastGoodConfigMap that persists version
// (the object good) of a source.
func EncodeLastGood(src policy.Source, uid types.UID, version string, good *unstructured.Unstructured) (string, error) {
	_, doc, err := carrier.Document(good)
	if err != nil {
		return "", fmt.Errorf("reading the document of %s version %s: %w", src, version, err)
	}
	b, err := yaml.Marshal(LastGoodEntry{Kind: src.Kind, Namespace: src.Namespace, Name: src.Name, UID: uid, Version: version, Policy: string(doc)})
	if err != nil {
		return "", fmt.Errorf("encoding the last good version of %s: %w", src, err)
	}
	return string(b), nil
}

// DecodeLastGood reads an entry of LastGoodConfigMap.
func DecodeLastGood(entry string) (LastGoodEntry, error) {
	var e LastGoodEntry
	err := yaml.UnmarshalStrict([]byte(entry), &e)
	return e, err
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
