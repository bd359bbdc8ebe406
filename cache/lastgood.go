package cache

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// LastGoodKeySecret is the Secret, in the policy namespace, whose data key
// LastGoodKeyData holds the key every entry of LastGoodConfigMap is signed
// with (HMAC-SHA256). An entry that does not verify is not enforced: only
// the webhook, which alone may read and write that Secret, can make one.
// The elected replica creates it, with a random key, when it first needs it.
const (
	LastGoodKeySecret = "policy-webhook-last-good-key"
	LastGoodKeyData   = "key"
	// LastGoodKeyBytes is the size of a key the leader makes, and the
	// least a key read must have: a shorter one is ignored.
	LastGoodKeyBytes = 32
)

// signaturePrefix names the MAC of an entry's signature.
const signaturePrefix = "hmac-sha256:"

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
	// Signature is hmac-sha256:<base64> of every other field, keyed by
	// the key of LastGoodKeySecret.
	Signature string `json:"signature,omitempty"`
}

// mac is the MAC of every field but the signature. JSON of the struct,
// whose fields encode in a fixed order, is the canonical form.
func (e LastGoodEntry) mac(key []byte) []byte {
	e.Signature = ""
	b, _ := json.Marshal(e) // strings only: it cannot fail
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return h.Sum(nil)
}

// Sign sets the entry's signature under key.
func (e *LastGoodEntry) Sign(key []byte) {
	e.Signature = signaturePrefix + base64.StdEncoding.EncodeToString(e.mac(key))
}

// errUnsigned is an entry that no key of this webhook signed.
var errUnsigned = errors.New("its signature does not verify with the webhook's key (Secret " + LastGoodKeySecret + "): it was not written by the webhook")

// Verify reports whether key signed the entry as it is.
func (e *LastGoodEntry) Verify(key []byte) error {
	sig, ok := strings.CutPrefix(e.Signature, signaturePrefix)
	if len(key) < LastGoodKeyBytes || !ok {
		return errUnsigned
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, e.mac(key)) {
		return errUnsigned
	}
	return nil
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
	key   []byte // that verified it
}

// lastGoodTable is what this replica read from the ConfigMap, and the key
// its entries are verified with. The informer handlers write it; snapshot
// builds and the leader read it.
type lastGoodTable struct {
	// reading serialises onLastGood, which the handlers of two informers
	// (the ConfigMap's and the key's) call.
	reading sync.Mutex
	mu      sync.Mutex
	m       map[policy.Source]persistedGood
	key     []byte
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

func (c *Cache) lastGoodKeyHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onLastGoodKey(obj, false) },
		UpdateFunc: func(_, obj any) { c.onLastGoodKey(obj, false) },
		DeleteFunc: func(obj any) { c.onLastGoodKey(obj, true) },
	}
}

// onLastGoodKey takes the signing key anew and verifies the entries again
// with it.
func (c *Cache) onLastGoodKey(obj any, deleted bool) {
	if _, name, ok := objectKey(obj); !ok || name != LastGoodKeySecret {
		return
	}
	var key []byte
	if u, ok := obj.(*unstructured.Unstructured); ok && !deleted {
		// The API gives a Secret's data base64-encoded.
		enc, _, _ := unstructured.NestedString(u.Object, "data", LastGoodKeyData)
		if k, err := base64.StdEncoding.DecodeString(enc); err == nil && len(k) >= LastGoodKeyBytes {
			key = k
		} else {
			c.log.Error(err, "Ignoring the key of the last good versions: it is not base64 of at least 32 bytes", "secret", LastGoodKeySecret, "dataKey", LastGoodKeyData)
		}
	}
	c.lastGood.reading.Lock()
	c.lastGood.mu.Lock()
	same := bytes.Equal(c.lastGood.key, key)
	c.lastGood.key = key
	c.lastGood.mu.Unlock()
	c.lastGood.reading.Unlock()
	if same {
		return
	}
	if cm, ok := c.LastGoodConfigMap(); ok {
		c.onLastGood(cm, false)
	} else {
		c.changed(time.Now())
	}
}

// LastGoodKey is the key entries of LastGoodConfigMap are signed with; nil
// while the Secret holding it is missing or unreadable.
func (c *Cache) LastGoodKey() []byte {
	c.lastGood.mu.Lock()
	defer c.lastGood.mu.Unlock()
	return c.lastGood.key
}

// onLastGood reads the ConfigMap anew: each entry is verified and compiled
// once, when it first appears or changes. An entry that cannot be read or
// does not verify is logged and left out: its source falls back to the
// stand-in, unless this replica verified an earlier entry for it, which
// then stays (and the leader writes it back).
func (c *Cache) onLastGood(obj any, deleted bool) {
	if _, name, ok := objectKey(obj); !ok || name != LastGoodConfigMap {
		return // the field selector keeps others out; a fake client may not
	}
	var data map[string]string
	if u, ok := obj.(*unstructured.Unstructured); ok && !deleted {
		data, _, _ = unstructured.NestedStringMap(u.Object, "data")
	}
	c.lastGood.reading.Lock()
	defer c.lastGood.reading.Unlock()
	c.lastGood.mu.Lock()
	old, signKey := c.lastGood.m, c.lastGood.key
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
		prev, known := old[src]
		if known && prev.value == value && bytes.Equal(prev.key, signKey) {
			next[src] = prev
			continue
		}
		if err := e.Verify(signKey); err != nil {
			if known {
				// Verified before, under this key or the one before it: the
				// entry was changed behind the webhook's back.
				next[src] = prev
			}
			c.log.Error(err, "Ignoring an entry of the last good versions that the webhook did not write", "configMap", LastGoodConfigMap, "key", key,
				"source", src.String(), "keptEarlier", known)
			continue
		}
		p, err := c.compiler.CompileDocument(src, c.cfg.PolicyNamespace, e.Version, []byte(e.Policy))
		if err != nil {
			c.log.Error(err, "Ignoring a persisted last good version that does not compile", "configMap", LastGoodConfigMap, "key", key)
			continue
		}
		next[src] = persistedGood{uid: e.UID, value: value, p: p, key: signKey}
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
// (the object good) of a source, signed with key.
func EncodeLastGood(key []byte, src policy.Source, uid types.UID, version string, good *unstructured.Unstructured) (string, error) {
	_, doc, err := carrier.Document(good)
	if err != nil {
		return "", fmt.Errorf("reading the document of %s version %s: %w", src, version, err)
	}
	return SignLastGood(key, LastGoodEntry{Kind: src.Kind, Namespace: src.Namespace, Name: src.Name, UID: uid, Version: version, Policy: string(doc)})
}

// SignLastGood encodes an entry signed with key.
func SignLastGood(key []byte, e LastGoodEntry) (string, error) {
	e.Sign(key)
	b, err := yaml.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encoding the last good version of %s: %w", e.Source(), err)
	}
	return string(b), nil
}

// ResignLastGood is a stored entry (one this replica verified) signed with
// key, the same string if key signed it already.
func ResignLastGood(key []byte, entry string) (string, error) {
	e, err := DecodeLastGood(entry)
	if err != nil {
		return "", fmt.Errorf("reading a persisted last good version: %w", err)
	}
	if e.Verify(key) == nil {
		return entry, nil
	}
	return SignLastGood(key, e)
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
