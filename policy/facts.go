package policy

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// facts is what rules read of one object, gathered once per request.
type facts struct {
	pod        *Pod
	apple      *MyApple
	containers []container // nil until a pod rule needs them
	volumes    []container // image volumes, nil until an image rule needs them
	volumesSet bool
	images     *ImageCache
}

// container is one container of any of the three lists, or an image volume.
type container struct {
	list   string // containers, initContainers or ephemeralContainers
	index  int
	name   string
	sc     *SecurityContext
	limits corev1.ResourceList
	hasRes bool // ephemeral containers may not set resources

	image  image
	parsed bool
}

func (f *facts) allContainers() []container {
	if f.containers != nil || f.pod == nil {
		return f.containers
	}
	s := &f.pod.Spec
	cs := make([]container, 0, len(s.InitContainers)+len(s.Containers)+len(s.EphemeralContainers))
	add := func(list string, src []Container, hasRes bool) {
		for i := range src {
			c := &src[i]
			cs = append(cs, container{list: list, index: i, name: c.Name, sc: c.SecurityContext, limits: c.Resources.Limits, hasRes: hasRes, image: image{raw: c.Image}})
		}
	}
	add("initContainers", s.InitContainers, true)
	add("containers", s.Containers, true)
	add("ephemeralContainers", s.EphemeralContainers, false)
	f.containers = cs
	return cs
}

// imageVolumes are the Pod's image volumes, judged by the image rules.
func (f *facts) imageVolumes() []container {
	if f.volumesSet || f.pod == nil {
		return f.volumes
	}
	f.volumesSet = true
	for i := range f.pod.Spec.Volumes {
		v := &f.pod.Spec.Volumes[i]
		if v.Image != nil {
			f.volumes = append(f.volumes, container{list: "volumes", index: i, name: v.Name, image: image{raw: v.Image.Reference}})
		}
	}
	return f.volumes
}

// parsedImage normalises the container's image on first use; every later
// rule and policy reads the same result.
func (c *container) parsedImage(cache *ImageCache) *image {
	if !c.parsed {
		if cache != nil {
			c.image = cache.parse(c.image.raw)
		} else {
			c.image = parseImage(c.image.raw)
		}
		c.parsed = true
	}
	return &c.image
}

func (c *container) field(suffix string) string {
	return "spec." + c.list + "[" + itoa(c.index) + "]." + suffix
}

func (c *container) imageField() string {
	if c.list == "volumes" {
		return c.field("image.reference")
	}
	return c.field("image")
}

func itoa(i int) string { return strconv.Itoa(i) }
