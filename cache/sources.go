package cache

import (
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/policy/carrier"
)

// sourceState is what the cache knows of one policy source: the last good
// version, compiled, and whether the newest version seen is it.
type sourceState struct {
	inForce *policy.Policy // nil when no version has compiled
	// good is the object of the version in force, whose document the
	// leader persists once a newer version is invalid. Informers never
	// change a stored object, so holding it copies nothing.
	good *unstructured.Unstructured
	// standIn covers what the newest version matches when it is invalid
	// and no good version is known (policy.StandIn); nil otherwise.
	standIn *policy.Policy
	// version and uid identify the newest version seen: its resourceVersion
	// (ConfigMap) or generation (AdmissionPolicy), and the object's UID, so
	// that a source deleted and recreated under the same name is new.
	version string
	uid     types.UID
	err     error // why the newest version is not in force; nil when it is

	// candidate is the last good candidate, judged beside the version in
	// force; nil when the newest version carries none, or none compiled.
	candidate *carrier.Candidate
	// candidateErr is why the newest version's candidate is not judged.
	candidateErr error
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

// set records a new version u of a source. Compiled (p non-nil), it goes
// in force; invalid, whatever was in force stays, and standIn is what
// stands in when nothing is. It returns the new state.
func (t *sourceTable) set(src policy.Source, u *unstructured.Unstructured, version string, p, standIn *policy.Policy, err error, cand candidateVersion) sourceState {
	uid := u.GetUID()
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.m[src]
	if st == nil || st.uid != uid {
		// A new object, even under an old name, inherits nothing.
		st = &sourceState{}
		t.m[src] = st
	}
	st.version, st.uid, st.err, st.standIn = version, uid, err, nil
	if err == nil {
		st.inForce, st.good = p, u
	} else {
		st.standIn = standIn
	}
	// A candidate has its own last good version: an invalid one keeps the
	// one before it judged, and never touches the version in force.
	st.candidateErr = cand.err
	switch {
	case !cand.present:
		st.candidate = nil
	case cand.err == nil:
		st.candidate = cand.c
	}
	return *st
}

// candidateVersion is the candidate a version of a source carries.
type candidateVersion struct {
	present bool
	c       *carrier.Candidate // compiled, when valid
	err     error
}

// CandidateState is what a snapshot holds of a source's candidate.
type CandidateState struct {
	// Candidate is the candidate judged: the last good one, nil if none.
	Candidate *carrier.Candidate
	// Err is why the newest candidate is not judged, nil when it is.
	Err error
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
// whose newest version is not, for a new snapshot. An invalid source keeps
// its last good version in force: the one in memory, else the persisted
// one (if it belongs to the object uid), else its stand-in.
func (t *sourceTable) collect(persisted func(policy.Source, types.UID) (*policy.Policy, bool)) ([]*policy.Policy, map[policy.Source]SourceError, map[policy.Source]CandidateState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	policies := make([]*policy.Policy, 0, len(t.m))
	var errs map[policy.Source]SourceError
	var cands map[policy.Source]CandidateState
	for src, st := range t.m {
		if st.candidate != nil || st.candidateErr != nil {
			if cands == nil {
				cands = map[policy.Source]CandidateState{}
			}
			cands[src] = CandidateState{Candidate: st.candidate, Err: st.candidateErr}
		}
		p := st.inForce
		if st.err == nil {
			policies = append(policies, p)
			continue
		}
		se := SourceError{Version: st.version, Err: st.err, InForce: inForceVersion(st)}
		if p == nil {
			if g, ok := persisted(src, st.uid); ok {
				p, se.InForce, se.Restored = g, g.Version, true
			} else if st.standIn != nil {
				p, se.StandIn = st.standIn, st.standIn.Enforcement
			}
		}
		if p != nil {
			policies = append(policies, p)
		}
		if errs == nil {
			errs = map[policy.Source]SourceError{}
		}
		errs[src] = se
	}
	return policies, errs, cands
}

func inForceVersion(st *sourceState) string {
	if st.inForce == nil {
		return ""
	}
	return st.inForce.Version
}
