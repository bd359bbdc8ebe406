package policy

import (
	"fmt"
	"strconv"
	"strings"

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

// maxReferenceLength is above the longest valid reference and bounds what
// parsing an image costs: the API server accepts any string as an image.
const maxReferenceLength = 1024

func parseImage(raw string) image {
	im := image{raw: raw}
	if len(raw) > maxReferenceLength {
		im.err = fmt.Errorf("it is %d characters long; no valid reference is longer than %d", len(raw), maxReferenceLength)
		return im
	}
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
		if im.name == p || strings.HasPrefix(im.name, r.registriesSlash[i]) {
			return true
		}
	}
	return false
}

// quoted is the reference as written, quoted for messages, cut short when
// too long to be a reference.
func (im *image) quoted() string {
	const keep = 64
	if len(im.raw) <= maxReferenceLength {
		return strconv.Quote(im.raw)
	}
	return strconv.Quote(im.raw[:keep]) + "..."
}
