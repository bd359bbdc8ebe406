package main

import (
	"context"
	"fmt"
	"time"
)

// serverCost is what a run cost the webhook process, from /proc and its
// metrics, read before and after the counted window.
type serverCost struct {
	CPUPerRequest time.Duration `json:"cpuPerRequestNs"`
	RSSBytes      int64         `json:"rssBytes"`
	APIRequests   float64       `json:"apiRequests"`
}

// measured runs the closed loop while sampling s (nil: no server to
// sample) at the start and the end of the counted window.
func measured(ctx context.Context, s *server, spec loadSpec, newAttempt func(int) attempt) (loadResult, serverCost, error) {
	type sample struct {
		proc procSample
		api  float64
		err  error
	}
	take := func() sample {
		var sm sample
		if s == nil {
			return sm
		}
		if sm.proc, sm.err = readProc(s.child.pid()); sm.err != nil {
			return sm
		}
		sm.api, sm.err = s.apiRequests(ctx)
		return sm
	}
	first := make(chan sample, 1)
	go func() {
		select {
		case <-time.After(spec.warmup):
			first <- take()
		case <-ctx.Done():
			first <- sample{err: ctx.Err()}
		}
	}()
	res := closedLoop(ctx, spec, newAttempt)
	last := take()
	start := <-first
	var cost serverCost
	if s == nil {
		return res, cost, nil
	}
	if start.err != nil || last.err != nil {
		return res, cost, fmt.Errorf("sampling %s: %v %v", s.name, start.err, last.err)
	}
	if res.Requests > 0 {
		cost.CPUPerRequest = (last.proc.cpu - start.proc.cpu) / time.Duration(res.Requests)
	}
	cost.RSSBytes = last.proc.rssBytes
	cost.APIRequests = last.api - start.api
	return res, cost, nil
}
