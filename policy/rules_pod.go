package policy

import (
	"fmt"
	"slices"
)

// Rule names are the schema's field paths.
const (
	ruleRegistries     = "pods.allowedRegistries"
	ruleTags           = "pods.disallowedTags"
	ruleDigest         = "pods.requireDigest"
	ruleLabels         = "pods.requiredLabels"
	rulePrivileged     = "pods.forbidPrivileged"
	ruleHostNamespaces = "pods.forbidHostNamespaces"
	ruleHostPath       = "pods.forbidHostPath"
	ruleRunAsNonRoot   = "pods.requireRunAsNonRoot"
	ruleLimits         = "pods.requireResourceLimits"
)

func (r *podRules) check(f *facts, out *sink) {
	pod := f.pod
	for _, l := range r.requiredLabels {
		if _, ok := pod.Labels[l]; !ok {
			out.add(ruleLabels, "metadata.labels["+l+"]", fmt.Sprintf("missing required label %q", l))
		}
	}
	if r.hostNamespaces {
		if pod.Spec.HostNetwork {
			out.add(ruleHostNamespaces, "spec.hostNetwork", "hostNetwork is true: the pod would share the node's network namespace")
		}
		if pod.Spec.HostPID {
			out.add(ruleHostNamespaces, "spec.hostPID", "hostPID is true: the pod would share the node's process namespace")
		}
		if pod.Spec.HostIPC {
			out.add(ruleHostNamespaces, "spec.hostIPC", "hostIPC is true: the pod would share the node's IPC namespace")
		}
	}
	if r.hostPath {
		for i := range pod.Spec.Volumes {
			v := &pod.Spec.Volumes[i]
			if v.HostPath != nil {
				out.add(ruleHostPath, "spec.volumes["+itoa(i)+"].hostPath", fmt.Sprintf("volume %q mounts host path %q", v.Name, v.HostPath.Path))
			}
		}
	}
	images := r.readsImages()
	if !images && !r.privileged && !r.runAsNonRoot && len(r.limits) == 0 {
		return
	}
	cs := f.allContainers()
	for i := range cs {
		c := &cs[i]
		if images {
			r.checkImage(f, c, out)
		}
		if r.privileged && c.sc != nil && c.sc.Privileged != nil && *c.sc.Privileged {
			out.add(rulePrivileged, c.field("securityContext.privileged"), fmt.Sprintf("container %q is privileged", c.name))
		}
		if r.runAsNonRoot {
			checkRunAsNonRoot(f, c, out)
		}
		if c.hasRes {
			for _, res := range r.limits {
				if _, ok := c.limits[res]; !ok {
					out.add(ruleLimits, c.field("resources.limits."+string(res)), fmt.Sprintf("container %q sets no %s limit", c.name, res))
				}
			}
		}
	}
	if images {
		vs := f.imageVolumes()
		for i := range vs {
			r.checkImage(f, &vs[i], out)
		}
	}
}

func (r *podRules) checkImage(f *facts, c *container, out *sink) {
	im := c.parsedImage(f.images)
	if im.err != nil {
		rule := ruleRegistries
		switch {
		case len(r.registries) > 0:
		case len(r.disallowedTags) > 0:
			rule = ruleTags
		default:
			rule = ruleDigest
		}
		out.add(rule, c.imageField(), fmt.Sprintf("image %s is not a valid image reference: %v", im.quoted(), im.err))
		return
	}
	if len(r.registries) > 0 && !im.allowedBy(r) {
		out.add(ruleRegistries, c.imageField(), fmt.Sprintf("image %q resolves to %s, which is not under an allowed registry (%s)", im.raw, im.resolved(), r.registryList))
	}
	if len(r.disallowedTags) > 0 {
		if tag := im.effectiveTag(); tag != "" && slices.Contains(r.disallowedTags, tag) {
			how := "uses"
			if im.tag == "" {
				how = "has no tag, so it means"
			}
			out.add(ruleTags, c.imageField(), fmt.Sprintf("image %q %s tag %q, which is not allowed: pin a version or a digest", im.raw, how, tag))
		}
	}
	if r.requireDigest && im.digest == "" {
		out.add(ruleDigest, c.imageField(), fmt.Sprintf("image %q is not pinned by digest: use %s@sha256:<digest>", im.raw, im.name))
	}
}

// checkRunAsNonRoot applies the container's securityContext over the pod's,
// as the kubelet does, and also refuses an explicit user 0.
func checkRunAsNonRoot(f *facts, c *container, out *sink) {
	psc := f.pod.Spec.SecurityContext
	nonRoot, fromPod := (*bool)(nil), false
	if c.sc != nil && c.sc.RunAsNonRoot != nil {
		nonRoot = c.sc.RunAsNonRoot
	} else if psc != nil && psc.RunAsNonRoot != nil {
		nonRoot, fromPod = psc.RunAsNonRoot, true
	}
	switch {
	case nonRoot == nil:
		out.add(ruleRunAsNonRoot, c.field("securityContext.runAsNonRoot"), fmt.Sprintf("container %q does not set runAsNonRoot: true, nor does the pod's securityContext", c.name))
	case !*nonRoot && fromPod:
		out.add(ruleRunAsNonRoot, "spec.securityContext.runAsNonRoot", fmt.Sprintf("container %q inherits runAsNonRoot: false from the pod", c.name))
	case !*nonRoot:
		out.add(ruleRunAsNonRoot, c.field("securityContext.runAsNonRoot"), fmt.Sprintf("container %q sets runAsNonRoot: false", c.name))
	}
	if c.sc != nil && c.sc.RunAsUser != nil {
		if *c.sc.RunAsUser == 0 {
			out.add(ruleRunAsNonRoot, c.field("securityContext.runAsUser"), fmt.Sprintf("container %q runs as user 0 (root)", c.name))
		}
	} else if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		out.add(ruleRunAsNonRoot, "spec.securityContext.runAsUser", fmt.Sprintf("container %q inherits user 0 (root) from the pod", c.name))
	}
}
