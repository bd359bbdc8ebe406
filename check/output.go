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
// then an indented line per violation.
func WriteText(w io.Writer, results []*Result) error {
	for _, r := range results {
		if _, err := fmt.Fprintf(w, "%s %s %s/%s\n", r.Verdict(), r.Kind, r.Namespace, r.Name); err != nil {
			return err
		}
		for i := range r.Violations {
			if _, err := fmt.Fprintf(w, "  %s\n", r.Violations[i].String()); err != nil {
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
