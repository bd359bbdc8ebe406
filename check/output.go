package check

import (
	"encoding/json"
	"fmt"
	"io"
)

// Formats of the report.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// WriteText writes a line per result, `DENY|WARN|ALLOW <Kind> <namespace>/<name>`,
// then an indented line per violation (an excepted one says by which
// exception and until when).
func WriteText(w io.Writer, results []*Result) error {
	for _, r := range results {
		if _, err := fmt.Fprintf(w, "%s %s %s/%s\n", r.Verdict(), r.Kind, r.Namespace, r.Name); err != nil {
			return err
		}
		for i := range r.Violations {
			v := &r.Violations[i]
			line := v.String()
			if v.ExceptedBy != "" {
				line = v.ExceptedString()
			}
			if _, err := fmt.Fprintf(w, "  %s\n", line); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteCandidateText writes, for each object a candidate would decide
// otherwise, its verdict under the policies and then one line per
// disagreement; objects all agree on are left out.
func WriteCandidateText(w io.Writer, results []*Result) error {
	for _, r := range results {
		if len(r.Candidate) == 0 {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s %s %s/%s\n", r.Verdict(), r.Kind, r.Namespace, r.Name); err != nil {
			return err
		}
		for i := range r.Candidate {
			if _, err := fmt.Fprintf(w, "  candidate %s\n", r.Candidate[i].String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteJSON writes {"results":[...]}.
func WriteJSON(w io.Writer, results []*Result) error {
	if results == nil {
		results = []*Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Results []*Result `json:"results"`
	}{results})
}
