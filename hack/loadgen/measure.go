package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// serverCost is what the counted windows cost the webhook process, from
// /proc and its metrics, read at the start and the end of each window.
type serverCost struct {
	CPUPerRequest time.Duration `json:"cpuPerRequestNs"`
	RSSBytes      int64         `json:"rssBytes"`
	APIRequests   float64       `json:"apiRequests"`
}

// contender is one side of a comparison: a server (nil: none, the API
// server alone), how to route load to it, and the per-worker attempts.
type contender struct {
	name     string
	server   *server
	prepare  func(ctx context.Context) error // before each of its windows; may be nil
	attempts []attempt
}

// compare runs rounds windows of spec for each contender in turn (A B A B
// ...), so that whatever else the machine does in the meantime falls on
// all of them alike, and merges each contender's windows.
func compare(ctx context.Context, spec loadSpec, rounds int, cs []contender) ([]loadResult, []serverCost, error) {
	windows := make([][]window, len(cs))
	costs := make([]serverCost, len(cs))
	cpu := make([]time.Duration, len(cs))
	for range rounds {
		for i, c := range cs {
			if c.prepare != nil {
				if err := c.prepare(ctx); err != nil {
					return nil, nil, err
				}
			}
			var before procSample
			var beforeAPI float64
			var sampleErr error
			onCounted := func() {
				if c.server == nil {
					return
				}
				if before, sampleErr = readProc(c.server.child.pid()); sampleErr == nil {
					beforeAPI, sampleErr = c.server.apiRequests(ctx)
				}
			}
			w := closedLoop(ctx, spec, c.attempts, onCounted)
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			windows[i] = append(windows[i], w)
			if c.server == nil {
				continue
			}
			after, err := readProc(c.server.child.pid())
			if err != nil {
				return nil, nil, err
			}
			afterAPI, err := c.server.apiRequests(ctx)
			if err := errors.Join(sampleErr, err); err != nil {
				return nil, nil, fmt.Errorf("sampling %s: %w", c.name, err)
			}
			cpu[i] += after.cpu - before.cpu
			costs[i].RSSBytes = after.rssBytes
			costs[i].APIRequests += afterAPI - beforeAPI
		}
	}
	results := make([]loadResult, len(cs))
	for i := range cs {
		results[i] = summarize(windows[i])
		if results[i].Requests > 0 {
			costs[i].CPUPerRequest = cpu[i] / time.Duration(results[i].Requests)
		}
	}
	return results, costs, nil
}
