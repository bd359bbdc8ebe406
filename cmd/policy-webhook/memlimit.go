package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroup files holding the container's memory limit: v2, then v1.
var cgroupMemoryLimitFiles = []string{
	"/sys/fs/cgroup/memory.max",
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// memoryLimit is what setMemoryLimit chose, for the log.
type memoryLimit struct {
	bytes  int64  // the Go memory limit in force; 0: none set here
	source string // where it came from
}

// setMemoryLimit sets the Go soft memory limit to ratio of the cgroup memory
// limit, so the GC works harder near it rather than the kernel killing the
// process. GOMEMLIMIT wins; no cgroup limit, or a ratio of 0, sets none.
func setMemoryLimit(ratio float64, files []string) (memoryLimit, error) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return memoryLimit{bytes: debug.SetMemoryLimit(-1), source: "GOMEMLIMIT=" + v}, nil
	}
	if ratio <= 0 {
		return memoryLimit{source: "--memory-limit-ratio=0: none"}, nil
	}
	if ratio > 1 {
		return memoryLimit{}, fmt.Errorf("--memory-limit-ratio %g is above 1", ratio)
	}
	limit, file, err := cgroupMemoryLimit(files)
	if err != nil {
		return memoryLimit{}, err
	}
	if limit <= 0 {
		return memoryLimit{source: "no cgroup memory limit: none"}, nil
	}
	b := int64(float64(limit) * ratio)
	debug.SetMemoryLimit(b)
	return memoryLimit{bytes: b, source: fmt.Sprintf("%g of %d bytes in %s", ratio, limit, file)}, nil
}

// cgroupMemoryLimit reads the first limit file that exists. 0 means no
// limit: "max" in v2, or v1's huge page-rounded maximum.
func cgroupMemoryLimit(files []string) (int64, string, error) {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, f, fmt.Errorf("reading the cgroup memory limit: %w", err)
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return 0, f, nil
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, f, fmt.Errorf("reading the cgroup memory limit in %s: %q is not a number", f, s)
		}
		if n >= math.MaxInt64/2 {
			return 0, f, nil
		}
		return int64(n), f, nil
	}
	return 0, "", nil
}
