package policy

import (
	"sync"
	"sync/atomic"
)

// ImageCache remembers normalised image references across requests. Parsing
// a reference is the single largest cost of judging a Pod (the reference
// grammar is a regular expression, about 2 µs an image), while a cluster
// runs few distinct images, each in many Pods. Reads take no lock.
//
// It is bounded: past its capacity it starts afresh, which costs a few
// re-parses and keeps memory fixed whatever images the cluster sees.
type ImageCache struct {
	capacity int64
	size     atomic.Int64
	m        sync.Map // raw reference -> *image
}

// NewImageCache returns a cache holding up to capacity references.
func NewImageCache(capacity int) *ImageCache {
	if capacity < 1 {
		capacity = 1
	}
	return &ImageCache{capacity: int64(capacity)}
}

func (c *ImageCache) parse(raw string) image {
	if len(raw) > maxReferenceLength {
		// Never valid, cheap to refuse, and not worth keeping as a key.
		return parseImage(raw)
	}
	if v, ok := c.m.Load(raw); ok {
		return *v.(*image)
	}
	im := parseImage(raw)
	if c.size.Add(1) > c.capacity {
		c.m.Clear()
		c.size.Store(1)
	}
	c.m.Store(raw, &im)
	return im
}
