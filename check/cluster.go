package check

import (
	"sort"

	"github.com/policy-webhook/policy-webhook/policy/cel"
)

// Cluster is the cluster state that files describe: namespace labels and
// annotations, and the MyApples admitted so far. It implements
// policy.Cluster and cel.Cluster, as the webhook's cache does.
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

// SetNamespace records a namespace, its labels and annotations. The API
// server always sets kubernetes.io/metadata.name, so it is added here too.
func (c *Cluster) SetNamespace(name string, labels, annotations map[string]string) {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
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

// SetMyApple records an admitted MyApple, replacing an earlier one of the
// same name.
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

// MyApples implements cel.Cluster: the MyApples of a namespace, sorted by
// name as the webhook's cache lists them.
func (c *Cluster) MyApples(namespace string) []cel.Apple {
	ns := c.apples[namespace]
	list := make([]cel.Apple, 0, len(ns))
	for _, a := range ns {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}

var _ cel.Cluster = (*Cluster)(nil)
