package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/policy-webhook/policy-webhook/test/promtest"
)

// auditedAnnotations returns the annotations the API server's audit log
// holds for the last write of one object (resource "pods" or "myapples"),
// or an error saying why there is none yet.
func auditedAnnotations(resource, ns, name string) (map[string]string, error) {
	f, err := os.Open(env.auditLog)
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var found map[string]string
	seen := false
	for sc.Scan() {
		line := sc.Bytes()
		// Most events are other tests' objects: skip them without decoding.
		if !strings.Contains(string(line), `"`+ns+`"`) {
			continue
		}
		var ev auditv1.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("decoding an audit event: %w", err)
		}
		if r := ev.ObjectRef; r != nil && r.Resource == resource && r.Namespace == ns && r.Name == name && r.Subresource == "" {
			seen = true
			found = ev.Annotations
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	if !seen {
		return nil, fmt.Errorf("no audit event for %s %s/%s", resource, ns, name)
	}
	return found, nil
}

// auditLogMessage is the message of the webhook's log line for an
// admission's Audit violations.
const auditLogMessage = "Audit policy violations"

// logRecorder passes every record to the handler it wraps and keeps the
// webhook's Audit lines (the last maxAuditLines), each as its attributes
// "key=value" joined by spaces, so a test can find the violations an Audit
// policy reported for an object.
type logRecorder struct {
	slog.Handler
	lines *auditLines
	attrs []slog.Attr
}

type auditLines struct {
	mu    sync.Mutex
	lines []string
}

const maxAuditLines = 1000

func newLogRecorder(h slog.Handler) *logRecorder {
	return &logRecorder{Handler: h, lines: &auditLines{}}
}

func (h *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == auditLogMessage {
		var b strings.Builder
		b.WriteString(r.Message)
		add := func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value.Any())
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		h.lines.mu.Lock()
		if len(h.lines.lines) == maxAuditLines {
			h.lines.lines = h.lines.lines[1:]
		}
		h.lines.lines = append(h.lines.lines, b.String())
		h.lines.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{Handler: h.Handler.WithAttrs(as), lines: h.lines, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *logRecorder) WithGroup(name string) slog.Handler {
	return &logRecorder{Handler: h.Handler.WithGroup(name), lines: h.lines, attrs: h.attrs}
}

// auditLinesWith returns the recorded Audit lines that contain every one
// of the substrings.
func (h *logRecorder) auditLinesWith(subs ...string) []string {
	h.lines.mu.Lock()
	defer h.lines.mu.Unlock()
	var out []string
	for _, l := range h.lines.lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// violationsCounted is policy_webhook_violations_total{rule, enforcement} of
// the shared webhook, which registers its metrics in controller-runtime's
// registry.
func violationsCounted(t *testing.T, rule, enforcement string) float64 {
	t.Helper()
	return promtest.Sum(t, crmetrics.Registry, "policy_webhook_violations_total", map[string]string{"rule": rule, "enforcement": enforcement})
}
