package carrier

import (
	"bytes"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/policy-webhook/policy-webhook/policy"
)

// Bounds a policy document is held to before it is parsed: parsing YAML
// costs memory in proportion to its nesting, not its size, so depth is
// checked on the text first.
const (
	// MaxPolicyBytes is the most a policy document may hold, a ConfigMap's
	// limit.
	MaxPolicyBytes = 1 << 20
	// MaxPolicyDepth is the deepest a policy document may nest, counting
	// block indentation levels, sequence entries and flow brackets.
	MaxPolicyDepth = 32
)

// checkBounds refuses a document larger or deeper than the bounds.
func checkBounds(data []byte) *field.Error {
	if len(data) > MaxPolicyBytes {
		return policy.FieldError("", fmt.Sprintf("the policy is %d bytes, larger than the limit of %d", len(data), MaxPolicyBytes))
	}
	if d := maxDepth(data, MaxPolicyDepth); d > MaxPolicyDepth {
		return policy.FieldError("", fmt.Sprintf("the policy nests deeper than %d levels", MaxPolicyDepth))
	}
	return nil
}

// maxDepth measures the nesting of YAML text, stopping once it passes limit:
// an upper bound of what the parser would build, counting indentation levels
// and flow brackets and skipping comments, quoted strings and block scalars.
func maxDepth(data []byte, limit int) int {
	var (
		indents      []int // indentation of the enclosing block levels
		flow         int   // open flow brackets
		quote        byte  // the open quote, 0 outside a quoted string
		scalarIndent = -1  // indentation of the key of an open block scalar
		deepest      int
	)
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		text := bytes.TrimLeft(line, " \t")
		indent := len(line) - len(text)
		if scalarIndent >= 0 {
			if len(bytes.TrimSpace(text)) == 0 || indent > scalarIndent {
				continue // the content of a block scalar
			}
			scalarIndent = -1
		}
		if flow == 0 && quote == 0 {
			if len(text) == 0 || text[0] == '#' {
				continue
			}
			for len(indents) > 0 && indents[len(indents)-1] >= indent {
				indents = indents[:len(indents)-1]
			}
			indents = append(indents, indent)
		}
		depth := len(indents)
		// "- - x" nests a sequence in a sequence on one line.
		for rest := text; len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || rest[1] == ' '); rest = bytes.TrimLeft(rest[1:], " ") {
			depth++
		}
	scan:
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				} else if c == '\\' && quote == '"' {
					i++
				}
				continue
			case c == '"' || c == '\'':
				quote = c
			case c == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
				break scan
			case c == '[' || c == '{':
				flow++
			case (c == ']' || c == '}') && flow > 0:
				flow--
			}
			if depth+flow > deepest {
				deepest = depth + flow
			}
		}
		if depth > deepest {
			deepest = depth
		}
		if deepest > limit {
			return deepest
		}
		if flow == 0 && quote == 0 && startsBlockScalar(text) {
			scalarIndent = indent
		}
	}
	return deepest
}

// startsBlockScalar reports whether a line opens a block scalar: it ends in
// | or >, perhaps with indicators (|-, >+, |2).
func startsBlockScalar(text []byte) bool {
	if i := bytes.Index(text, []byte(" #")); i >= 0 {
		text = text[:i]
	}
	text = bytes.TrimRight(text, " \t")
	text = bytes.TrimRight(text, "+-0123456789")
	return len(text) > 0 && (text[len(text)-1] == '|' || text[len(text)-1] == '>')
}
