package live

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/policy"
)

// sourceState is what the cache knows of one policy source: the last good
// version, compiled, and whether the newest version seen is it.
type sourceState struct {
	inForce *policy.Policy // nil when no version has compiled
	// version and uid identify the newest version seen: its resourceVersion
	// (ConfigMap) or generation (AdmissionPolicy), and the object's UID, so
	// that a source deleted and recreated under the same name is new.
	version string
	uid     types.UID
	err     error // why the newest version is not in force; nil when it is
}

// sourceTable maps each source to its compiled policy or error. Only
// informer handlers write it and only the snapshot builder and the status
// writer read it; requests never touch it, they read snapshots.
type sourceTable struct {
	mu sync.Mutex
	m  map[policy.Source]*sourceState
}

func newSourceTable() *sourceTable {
	return &sourceTable{m: map[policy.Source]*sourceState{}}
}

// set records a new version of a source. Compiled (p non-nil), it goes in
// force; invalid, whatever was in force stays. It returns the new state.
func (t *sourceTable) set(src policy.Source, version string, uid types.UID, p *policy.Policy, err error) sourceState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.m[src]
	if st == nil || st.uid != uid {
		// A new object, even under an old name, inherits nothing.
		st = &sourceState{}
		t.m[src] = st
	}
	st.version, st.uid, st.err = version, uid, err
	if err == nil {
		st.inForce = p
	}
	return *st
}

// remove forgets a deleted source, so it stops applying.
func (t *sourceTable) remove(src policy.Source) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[src]
	delete(t.m, src)
	return ok
}

func (t *sourceTable) get(src policy.Source) (sourceState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.m[src]
	if !ok {
		return sourceState{}, false
	}
	return *st, true
}

// collect returns the policies in force and the errors of the sources
// whose newest version is not, for a new snapshot.
func (t *sourceTable) collect() ([]*policy.Policy, map[policy.Source]SourceError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	policies := make([]*policy.Policy, 0, len(t.m))
	var errs map[policy.Source]SourceError
	for src, st := range t.m {
		if st.inForce != nil {
			policies = append(policies, st.inForce)
		}
		if st.err != nil {
			if errs == nil {
				errs = map[policy.Source]SourceError{}
			}
			errs[src] = SourceError{Version: st.version, Err: st.err, InForce: inForceVersion(st)}
		}
	}
	return policies, errs
}

func inForceVersion(st *sourceState) string {
	if st.inForce == nil {
		return ""
	}
	return st.inForce.Version
}
