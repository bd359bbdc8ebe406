package policy

import (
	"github.com/distribution/reference"
)

// image is a container image reference normalised the way the container
// runtime resolves it: "nginx" is docker.io/library/nginx:latest.
type image struct {
	raw    string
	name   string // repository, e.g. docker.io/library/nginx
	tag    string // "" when none was written
	digest string // "" when none was written
	err    error  // the reference does not parse
}

func parseImage(raw string) image {
	im := image{raw: raw}
	named, err := reference.ParseNormalizedNamed(raw)
	if err != nil {
		im.err = err
		return im
	}
	// Registry hosts are case-insensitive; repository paths are lowercase.
	im.name = lowerDomain(reference.Domain(named), named.Name())
	if t, ok := named.(reference.Tagged); ok {
		im.tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		im.digest = d.Digest().String()
	}
	return im
}

// effectiveTag is the tag the runtime pulls: an image with neither tag nor
// digest means "latest"; one pinned only by digest has no tag.
func (im *image) effectiveTag() string {
	if im.tag == "" && im.digest == "" {
		return "latest"
	}
	return im.tag
}

// resolved is the full reference the runtime would pull, for messages.
func (im *image) resolved() string {
	s := im.name
	if t := im.effectiveTag(); t != "" {
		s += ":" + t
	}
	if im.digest != "" {
		s += "@" + im.digest
	}
	return s
}

// allowedBy reports whether the repository lies under one of the prefixes,
// at a path-component boundary: "registry.example.com" admits
// registry.example.com/x but not registry.example.com.evil.io/x.
func (im *image) allowedBy(r *podRules) bool {
	for i, p := range r.registries {
		if im.name == p || hasPrefix(im.name, r.registriesSlash[i]) {
			return true
		}
	}
	return false
}

func hasPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && s[:len(prefix)] == prefix
}
