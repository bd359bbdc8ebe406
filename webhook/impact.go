package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
	"github.com/policy-webhook/policy-webhook/audit"
	"github.com/policy-webhook/policy-webhook/policy"
)

// Bounds of a policy object's impact check, the only admission that reads
// the API server: well inside the webhook's timeout.
const (
	impactBudget = 2 * time.Second
	impactNamed  = 5 // objects named in a warning; the rest are counted
)

// Impact judges the existing objects against a policy about to be applied,
// reading them in pages as the audit does.
type Impact struct {
	lister  *audit.Lister
	cluster policy.Cluster // namespace labels and quotas, from the cache
	budget  time.Duration
	// exceptions in force and the clock they apply by, so that an object
	// an exception covers is not counted (set by Handlers); nil: none.
	exceptions func() *policy.ExceptionSet
	now        func() time.Time
}

// NewImpact reads objects through client, a core/v1 REST client.
func NewImpact(client rest.Interface, cluster policy.Cluster) *Impact {
	return &Impact{lister: &audit.Lister{Client: client}, cluster: cluster, budget: impactBudget}
}

// warnings tells a policy's author what it would do to existing objects:
// `this policy would deny 2 Deployments and 12 Pods among existing objects: Deployment team-b/web (pods.allowedRegistries), ...`.
func (i *Impact) warnings(ctx context.Context, p *policy.Policy) []string {
	ctx, cancel := context.WithTimeout(ctx, i.budget)
	defer cancel()
	set := policy.NewSet([]*policy.Policy{p})
	var now time.Time
	if i.exceptions != nil && i.now != nil {
		set, now = set.Excepting(i.exceptions()), i.now()
	}
	var (
		hits           []string
		count, checked int
		byKind         = map[string]int{}
		err            error
	)
	for _, kind := range audit.Kinds() {
		if err != nil || !p.Judges(policy.Kind(kind)) {
			continue
		}
		// An existing object is judged as a CREATE: it has nothing to
		// forgive. A cluster without the MyApple CRD has none to judge.
		err = i.lister.Each(ctx, kind, p.Scope, func(o *audit.Object) error {
			req := o.Request
			req.Context, req.Now = ctx, now
			checked++
			d := set.Evaluate(req, i.cluster)
			// What an exception in force lifts, the policy would not do.
			if j := slices.IndexFunc(d.Violations, func(v policy.Violation) bool { return v.ExceptedBy == "" }); j >= 0 {
				byKind[o.Kind]++
				if count++; len(hits) < impactNamed {
					hits = append(hits, fmt.Sprintf("%s %s/%s (%s)", o.Kind, o.Namespace, o.Name, d.Violations[j].Rule))
				}
			}
			return nil
		})
		if errors.Is(err, audit.ErrNotServed) {
			err = nil
		}
	}
	var out []string
	if count > 0 {
		msg := fmt.Sprintf("this policy would %s %s among existing objects: %s", verb(p.Enforcement), countByKind(byKind), strings.Join(hits, ", "))
		if count > len(hits) {
			msg += fmt.Sprintf(" and %d more", count-len(hits))
		}
		out = append(out, msg)
	}
	if err != nil {
		out = append(out, fmt.Sprintf("policy-webhook checked only %d existing objects against this policy: %v", checked, reason(err)))
	}
	return out
}

// countByKind says "2 Deployments, 1 CronJob and 12 Pods": what users
// write first, then what it creates.
func countByKind(n map[string]int) string {
	var parts []string
	for _, c := range policy.PodControllers() {
		parts = appendCount(parts, n[string(c.Kind)], string(c.Kind))
	}
	parts = appendCount(parts, n[policy.KindPod], policy.KindPod)
	parts = appendCount(parts, n[policy.KindMyApple], policy.KindMyApple)
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func appendCount(parts []string, n int, kind string) []string {
	switch {
	case n == 1:
		return append(parts, "1 "+kind)
	case n > 1:
		return append(parts, fmt.Sprintf("%d %ss", n, kind))
	}
	return parts
}

func verb(e v1alpha1.Enforcement) string {
	switch e {
	case v1alpha1.Warn:
		return "warn on"
	case v1alpha1.Audit:
		return "report"
	}
	return "deny"
}

func reason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "the time to check them ran out"
	}
	return err.Error()
}
