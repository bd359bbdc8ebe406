package cache

import (
	"strconv"
	"time"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Snapshot is the policy in force at one moment. It is immutable: a change
// builds a new one and swaps it in whole, so a reader holding one sees a
// consistent view for as long as it keeps it.
type Snapshot struct {
	// Set holds the compiled policies in force.
	Set *policy.Set
	// Errors lists the sources whose newest version is invalid. A source
	// with a last good version keeps it in force (it is in Set), and one
	// without has a stand-in there instead.
	Errors map[policy.Source]SourceError
	// Candidates holds, for each source whose newest version carries a
	// candidate (or whose candidate is invalid), the candidate judged
	// beside it (its last good one) and why the newest is not.
	Candidates map[policy.Source]CandidateState
	// Version counts the snapshots this Cache has built. 0 is the empty
	// snapshot held before the first build.
	Version uint64
	// Built is when the snapshot was built.
	Built time.Time

	bySource map[policy.Source]*policy.Policy
}

// Policy returns the policy of a source in force in the snapshot, or nil.
func (s *Snapshot) Policy(src policy.Source) *policy.Policy { return s.bySource[src] }

// AdmissionPolicyState is what the snapshot enforces of an AdmissionPolicy
// whose newest generation is gen: ok is false when the snapshot has not
// caught up with gen yet (a later snapshot will have).
func (s *Snapshot) AdmissionPolicyState(name string, gen int64) (inForce bool, se SourceError, ok bool) {
	src := policy.Source{Kind: policy.SourceAdmissionPolicy, Name: name}
	version := strconv.FormatInt(gen, 10)
	if e, invalid := s.Errors[src]; invalid {
		return false, e, e.Version == version
	}
	p := s.Policy(src)
	return true, SourceError{}, p != nil && p.Version == version
}

// SourceError is why a source's newest version is not in force.
//
// Versions are resourceVersions for ConfigMaps and generations for
// AdmissionPolicies, as their status reports them.
type SourceError struct {
	// Version is the version that failed.
	Version string
	// Err holds the field-path errors.
	Err error
	// InForce is the version still in force, "" if none is.
	InForce string
	// Restored says InForce was read from the persisted last good
	// versions (LastGoodConfigMap), this replica having seen no good
	// version itself.
	Restored bool
	// StandIn is set when no good version is known: a stand-in covers
	// what the policy matches (policy.StandIn), at this enforcement.
	StandIn v1alpha1.Enforcement
}

// Policies returns the policies in force, in evaluation order.
func (s *Snapshot) Policies() []*policy.Policy { return s.Set.Policies() }
