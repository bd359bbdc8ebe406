package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
)

// goBenchmark is one line of `go test -bench -benchmem` output.
type goBenchmark struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"nsPerOp"`
	BytesPerOp  float64 `json:"bytesPerOp"`
	AllocsPerOp float64 `json:"allocsPerOp"`
}

// runGoBenchmarks runs the in-process benchmarks named by pattern in pkgs,
// echoing go test's output to logw, and parses the results.
func runGoBenchmarks(ctx context.Context, goBin, pattern, benchtime string, pkgs []string, logw io.Writer) ([]goBenchmark, error) {
	args := append([]string{"test", "-run", "^$", "-bench", pattern, "-benchmem", "-benchtime", benchtime}, pkgs...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, logw)
	cmd.Stderr = logw
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("running %s %s: %w", goBin, strings.Join(args, " "), err)
	}
	var res []goBenchmark
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		b := goBenchmark{Name: f[0]}
		// Pairs of value and unit follow the iteration count.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			}
		}
		res = append(res, b)
	}
	return res, nil
}
