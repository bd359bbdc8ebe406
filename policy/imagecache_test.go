package policy

import (
	"strings"
	"testing"
)

func TestImageCache(t *testing.T) {
	c := NewImageCache(3)
	first := c.parse("nginx")
	if first.name != "docker.io/library/nginx" || int(c.size.Load()) != 1 {
		t.Fatalf("parsed %+v, cache holds %d", first, int(c.size.Load()))
	}
	if again := c.parse("nginx"); again != first || int(c.size.Load()) != 1 {
		t.Errorf("second parse %+v, cache holds %d", again, int(c.size.Load()))
	}
	bad := c.parse("NGINX")
	if bad.err == nil || int(c.size.Load()) != 2 {
		t.Errorf("invalid reference: %+v, cache holds %d", bad, int(c.size.Load()))
	}
	// Past its capacity the cache starts afresh: memory stays bounded.
	for _, im := range []string{"a", "b", "c", "d", "e"} {
		c.parse(im)
		if int(c.size.Load()) > 3 {
			t.Fatalf("cache holds %d, capacity 3", int(c.size.Load()))
		}
	}
	if NewImageCache(0).capacity != 1 {
		t.Error("capacity below 1 is not raised to 1")
	}
}

// TestImageCacheKeepsNoHugeReferences: a Pod's image can be any string the
// API server accepts, megabytes long. No valid reference is that long, and
// keeping such strings as keys would let a few Pods pin gigabytes.
func TestImageCacheKeepsNoHugeReferences(t *testing.T) {
	c := NewImageCache(10)
	huge := "registry.example.com/" + strings.Repeat("a", 1<<20)
	if im := c.parse(huge); im.err == nil {
		t.Fatal("a 1 MiB reference parsed")
	}
	if int(c.size.Load()) != 0 {
		t.Errorf("cache holds %d entries after a 1 MiB reference", int(c.size.Load()))
	}
	longest := "registry.example.com/" + strings.Repeat("a", 230) + ":" + strings.Repeat("t", 128) + "@" + digestA
	if im := c.parse(longest); im.err != nil || int(c.size.Load()) != 1 {
		t.Errorf("longest valid reference: %v, cache holds %d", im.err, int(c.size.Load()))
	}
}
