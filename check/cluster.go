package check

import (
	"maps"

	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Cluster is the cluster state that files describe: namespaces and the
// MyApples admitted so far. It implements policy.Cluster and cel.Cluster.
type Cluster struct {
	namespaces  map[string]map[string]string
	annotations map[string]map[string]string
	apples      map[string]*cel.Apples // by namespace
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{
		namespaces:  map[string]map[string]string{},
		annotations: map[string]map[string]string{},
		apples:      map[string]*cel.Apples{},
	}
}

// SetNamespace records a namespace, its labels and annotations, adding the
// kubernetes.io/metadata.name label the API server always sets.
func (c *Cluster) SetNamespace(name string, labels, annotations map[string]string) {
	l := make(map[string]string, len(labels)+1)
	maps.Copy(l, labels)
	l["kubernetes.io/metadata.name"] = name
	c.namespaces[name] = l
	c.annotations[name] = annotations
}

// NamespaceLabels implements policy.Cluster.
func (c *Cluster) NamespaceLabels(name string) (map[string]string, bool) {
	l, ok := c.namespaces[name]
	return l, ok
}

// NamespaceAnnotations implements policy.Cluster.
func (c *Cluster) NamespaceAnnotations(name string) map[string]string {
	return c.annotations[name]
}

// SetMyApple records an admitted MyApple, replacing any of the same name.
func (c *Cluster) SetMyApple(namespace string, a cel.Apple) {
	ns := c.apples[namespace]
	if ns == nil {
		ns = cel.NewApples()
		c.apples[namespace] = ns
	}
	ns.Set(a)
}

// DeleteMyApple forgets a MyApple.
func (c *Cluster) DeleteMyApple(namespace, name string) {
	if ns := c.apples[namespace]; ns != nil {
		ns.Remove(name)
	}
}

// MyAppleQuantity implements policy.Cluster.
func (c *Cluster) MyAppleQuantity(namespace, except string) int64 {
	return c.MyAppleTally(namespace, cel.ByNamespace, "", except).Quantity
}

// MyApples implements cel.Cluster, sorted by name as the webhook's cache is.
func (c *Cluster) MyApples(namespace string) cel.AppleList {
	if ns := c.apples[namespace]; ns != nil {
		return ns.List()
	}
	return cel.AppleList{}
}

// MyAppleTally implements cel.Cluster.
func (c *Cluster) MyAppleTally(namespace string, by cel.GroupBy, value, except string) cel.Tally {
	if ns := c.apples[namespace]; ns != nil {
		return ns.Tally(by, value, except)
	}
	return cel.Tally{}
}

// MyAppleGroups implements cel.Cluster.
func (c *Cluster) MyAppleGroups(namespace string, by cel.GroupBy) []string {
	if ns := c.apples[namespace]; ns != nil {
		return ns.Groups(by)
	}
	return nil
}

var _ cel.Cluster = (*Cluster)(nil)
