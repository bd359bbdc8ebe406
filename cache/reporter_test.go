package cache

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The Event of an invalid version is named from the object's UID and the
// version alone, so every leader names it alike, and the name is one the
// API server accepts whatever the object's name.
func TestInvalidEventName(t *testing.T) {
	long := strings.Repeat("a", 230) + "-" + strings.Repeat("b", 22)
	names := map[string]bool{}
	for _, c := range []struct {
		name    string
		uid     types.UID
		version string
	}{
		{"registries", "uid-1", "101"},
		{"registries", "uid-1", "102"}, // a later invalid version
		{"registries", "uid-2", "101"}, // the same name recreated
		{long, "uid-1", "101"},
		{strings.Repeat("c", 236) + ".d", "uid-1", "101"}, // truncated at the dot
	} {
		got := invalidEventName(c.name, c.uid, c.version)
		if again := invalidEventName(c.name, c.uid, c.version); again != got {
			t.Errorf("%s: named %q, then %q", c.name, got, again)
		}
		if msgs := validation.IsDNS1123Subdomain(got); len(msgs) > 0 {
			t.Errorf("%q is no DNS subdomain: %v", got, msgs)
		}
		if names[got] {
			t.Errorf("%q named twice", got)
		}
		names[got] = true
	}
	if got := invalidEventName("registries", "uid-1", "101"); !strings.HasPrefix(got, "registries.") {
		t.Errorf("%q does not start with the object's name", got)
	}
}
