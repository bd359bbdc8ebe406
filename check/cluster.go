package check

// Cluster is the cluster state that files describe: namespace labels, and
// the MyApples admitted so far. It implements policy.Cluster.
type Cluster struct {
	namespaces map[string]map[string]string
	apples     map[string]map[string]int64 // namespace → name → spec.quantity
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{namespaces: map[string]map[string]string{}, apples: map[string]map[string]int64{}}
}

// SetNamespace records a namespace and its labels. The API server always
// sets kubernetes.io/metadata.name, so it is added here too.
func (c *Cluster) SetNamespace(name string, labels map[string]string) {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l["kubernetes.io/metadata.name"] = name
	c.namespaces[name] = l
}

// NamespaceLabels implements policy.Cluster.
func (c *Cluster) NamespaceLabels(name string) (map[string]string, bool) {
	l, ok := c.namespaces[name]
	return l, ok
}

// SetMyApple records an admitted MyApple, replacing an earlier one of the
// same name.
func (c *Cluster) SetMyApple(namespace, name string, quantity int64) {
	ns := c.apples[namespace]
	if ns == nil {
		ns = map[string]int64{}
		c.apples[namespace] = ns
	}
	ns[name] = quantity
}

// DeleteMyApple forgets a MyApple.
func (c *Cluster) DeleteMyApple(namespace, name string) {
	delete(c.apples[namespace], name)
}

// MyAppleQuantity implements policy.Cluster.
func (c *Cluster) MyAppleQuantity(namespace, except string) int64 {
	var sum int64
	for name, q := range c.apples[namespace] {
		if name != except {
			sum += q
		}
	}
	return sum
}
