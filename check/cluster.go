package check

import (
	"maps"
	"slices"
	"strings"

	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Cluster is the cluster state that files describe: namespaces and the
// MyApples admitted so far. It implements policy.Cluster and cel.Cluster.
type Cluster struct {
	namespaces  map[string]map[string]string
	annotations map[string]map[string]string
	apples      map[string]map[string]cel.Apple // namespace → name → apple
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{
		namespaces:  map[string]map[string]string{},
		annotations: map[string]map[string]string{},
		apples:      map[string]map[string]cel.Apple{},
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
		ns = map[string]cel.Apple{}
		c.apples[namespace] = ns
	}
	ns[a.Name] = a
}

// DeleteMyApple forgets a MyApple.
func (c *Cluster) DeleteMyApple(namespace, name string) {
	delete(c.apples[namespace], name)
}

// MyAppleQuantity implements policy.Cluster.
func (c *Cluster) MyAppleQuantity(namespace, except string) int64 {
	var sum int64
	for name, a := range c.apples[namespace] {
		if name != except {
			sum += a.Quantity
		}
	}
	return sum
}

// MyApples implements cel.Cluster, sorted by name as the webhook's cache is.
func (c *Cluster) MyApples(namespace string) []cel.Apple {
	ns := c.apples[namespace]
	list := slices.AppendSeq(make([]cel.Apple, 0, len(ns)), maps.Values(ns))
	slices.SortFunc(list, func(a, b cel.Apple) int { return strings.Compare(a.Name, b.Name) })
	return list
}

var _ cel.Cluster = (*Cluster)(nil)
