package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v2 := file("memory.max", "536870912\n")
	v2max := file("memory.max.unlimited", "max\n")
	v1 := file("memory.limit_in_bytes", "268435456\n")
	v1max := file("memory.limit_in_bytes.unlimited", "9223372036854771712\n")
	bad := file("memory.max.bad", "lots\n")
	missing := filepath.Join(dir, "absent")

	for name, c := range map[string]struct {
		ratio   float64
		files   []string
		want    int64 // the limit set; 0 none
		source  string
		wantErr string
	}{
		"cgroup v2":               {0.9, []string{v2, v1}, 483183820, "0.9 of 536870912 bytes in " + v2, ""},
		"cgroup v1 fallback":      {0.5, []string{missing, v1}, 134217728, "0.5 of 268435456 bytes in " + v1, ""},
		"v2 unlimited":            {0.9, []string{v2max, v1}, 0, "no cgroup memory limit", ""},
		"v1 unlimited":            {0.9, []string{missing, v1max}, 0, "no cgroup memory limit", ""},
		"no cgroup files":         {0.9, []string{missing}, 0, "no cgroup memory limit", ""},
		"ratio 0 leaves it":       {0, []string{v2}, 0, "--memory-limit-ratio=0", ""},
		"ratio above 1":           {1.5, []string{v2}, 0, "", "--memory-limit-ratio 1.5 is above 1"},
		"a file that is no limit": {0.9, []string{bad}, 0, "", `"lots" is not a number`},
	} {
		t.Run(name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			got, err := setMemoryLimit(c.ratio, c.files)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.bytes != c.want || !strings.HasPrefix(got.source, c.source) {
				t.Errorf("got %+v, want %d from %q", got, c.want, c.source)
			}
			want := c.want
			if want == 0 {
				want = math.MaxInt64
			}
			if now := debug.SetMemoryLimit(-1); now != want {
				t.Errorf("runtime memory limit %d, want %d", now, want)
			}
		})
	}

	t.Run("GOMEMLIMIT wins", func(t *testing.T) {
		t.Setenv("GOMEMLIMIT", "300MiB")
		debug.SetMemoryLimit(300 << 20) // what the runtime read at start
		got, err := setMemoryLimit(0.9, []string{v2})
		if err != nil || got.bytes != 300<<20 || got.source != "GOMEMLIMIT=300MiB" {
			t.Errorf("got %+v, %v", got, err)
		}
	})
}
