package policy

import (
	"sync"
	"sync/atomic"
)

// ImageCache remembers normalised image references across requests:
// parsing is the largest cost of judging a Pod, and a cluster runs few
// distinct images. Reads take no lock. Past its capacity it starts afresh,
// keeping memory bounded.
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
