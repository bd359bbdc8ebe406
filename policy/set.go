package policy

import "sort"

// Set is an immutable collection of compiled policies, indexed by kind and
// namespace. It is replaced whole on every policy change, so readers never lock.
type Set struct {
	images *ImageCache // nil: parse every image anew
	// exceptions lift violations while active; nil: none.
	exceptions *ExceptionSet
	all        []*Policy
	pods       index
	apple      index

	// Candidates (candidate.go), indexed by kind, and the policies in
	// force of their sources.
	candidates           []*Policy
	candPods, candApples index
	inForce              map[Source]*Policy
}

type index struct {
	cluster     []*Policy            // Scope ""
	byNamespace map[string][]*Policy // Scope ns
}

// NewSet indexes policies. The order of evaluation, and so of violations,
// is by scope (cluster-wide first) and source, whatever the input order.
func NewSet(policies []*Policy, opts ...SetOption) *Set {
	all := append([]*Policy(nil), policies...)
	sort.SliceStable(all, func(i, j int) bool { return lessPolicy(all[i], all[j]) })
	s := &Set{all: all}
	for _, o := range opts {
		o(s)
	}
	for _, p := range all {
		if p.pods {
			s.pods.add(p)
		}
		if p.apples {
			s.apple.add(p)
		}
	}
	s.indexCandidates()
	return s
}

// SetOption configures a Set.
type SetOption func(*Set)

// WithImageCache shares a cache of normalised images across requests and
// across the Sets that replace one another as policy changes.
func WithImageCache(c *ImageCache) SetOption {
	return func(s *Set) { s.images = c }
}

func lessPolicy(a, b *Policy) bool {
	if (a.Scope == "") != (b.Scope == "") {
		return a.Scope == ""
	}
	if a.Source.Kind != b.Source.Kind {
		return a.Source.Kind < b.Source.Kind // AdmissionPolicy before ConfigMap
	}
	if a.Source.Namespace != b.Source.Namespace {
		return a.Source.Namespace < b.Source.Namespace
	}
	return a.Source.Name < b.Source.Name
}

func (ix *index) add(p *Policy) {
	if p.Scope == "" {
		ix.cluster = append(ix.cluster, p)
		return
	}
	if ix.byNamespace == nil {
		ix.byNamespace = map[string][]*Policy{}
	}
	ix.byNamespace[p.Scope] = append(ix.byNamespace[p.Scope], p)
}

// Policies returns every policy of the set, in evaluation order.
func (s *Set) Policies() []*Policy { return s.all }

// Policy is the policy of a source in the set, or nil.
func (s *Set) Policy(src Source) *Policy {
	for _, p := range s.all {
		if p.Source == src {
			return p
		}
	}
	return nil
}

// Len is the number of policies in the set.
func (s *Set) Len() int { return len(s.all) }

func (s *Set) forKind(kind Kind) *index {
	switch kind {
	case KindPod:
		return &s.pods
	case KindMyApple:
		return &s.apple
	}
	return nil
}
