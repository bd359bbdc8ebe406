// Package jsonscan reads chosen members out of JSON text that is already
// known to be valid, in one pass and without reflection.
//
// The webhook reads a few dozen values out of a ~4 KB AdmissionReview and
// skips the rest. A reflection-driven decoder (encoding/json, or json/v2
// with encoding/json's semantics) spends most of an admission on member
// lookup, token bookkeeping and allocation; validating the same text with
// jsontext costs a third of that. So the work is split: jsontext validates
// (Valid), then a Scanner walks the valid text with no grammar checks of
// its own, reading what a caller asks for.
//
// A Scanner never guesses at encoding/json's semantics. Whatever it does not
// handle exactly (a member name that matches a field only case-insensitively
// or through escapes, a repeated member, a null where a value is expected, a
// value of the wrong type, a number out of range) makes it give up, and the
// caller decodes the text with its exact decoder instead. Giving up is rare
// in practice: the API server writes the same canonical JSON every time.
package jsonscan

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// validOptions are encoding/json's acceptance rules, which are laxer than
// jsontext's defaults: duplicate names and invalid UTF-8 are allowed.
var validOptions = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// Valid reports whether b is one JSON value, as encoding/json accepts it.
// A Scanner may only be given text for which Valid is true.
func Valid(b []byte) bool {
	return jsontext.Value(b).IsValid(validOptions)
}

// Scanner walks valid JSON text. Its zero value is not usable: use Reset.
//
// Methods read the next value and advance past it. After the scanner has
// given up, every read returns the zero value and every loop ends, so a
// caller checks Failed once, at the end.
type Scanner struct {
	b []byte
	// strs holds the text of every string read, so that a few allocations
	// serve them all instead of one each (a review has forty). A Builder
	// only appends and its String does not copy, so what it has handed out
	// is never written again. Strings read share its memory: whoever keeps
	// one for long keeps the others too, and should keep a strings.Clone.
	strs strings.Builder
	i    int
	name [2]int // where the last member name read is
	why  string
}

// Reset makes s read b, which must be valid JSON (see Valid).
func (s *Scanner) Reset(b []byte) {
	*s = Scanner{b: b}
}

// cut returns a copy of b as a string, from strs.
func (s *Scanner) cut(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s.strs.Cap()-s.strs.Len() < len(b) {
		// Room for this string and many more: the review's strings are a
		// small part of it.
		s.strs.Grow(max(len(b), len(s.b)/8, 256))
	}
	start := s.strs.Len()
	s.strs.Write(b)
	return s.strs.String()[start:]
}

// Failed reports whether the scanner gave up.
func (s *Scanner) Failed() bool { return s.why != "" }

// Reason says why the scanner gave up, or "".
func (s *Scanner) Reason() string { return s.why }

// GiveUp stops the scan: the text holds something the caller does not
// read exactly. The first reason is kept.
func (s *Scanner) GiveUp(why string) {
	if s.why == "" {
		s.why = why + " at offset " + strconv.Itoa(s.i)
	}
	s.i = len(s.b)
}

// Offset is the position of the next unread byte.
func (s *Scanner) Offset() int { return s.i }

func (s *Scanner) ws() {
	// Valid JSON has no control characters outside strings but whitespace.
	for s.i < len(s.b) && s.b[s.i] <= ' ' {
		s.i++
	}
}

// peek is the first byte of the next value, or 0 at the end.
func (s *Scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// Null consumes the next value if it is null.
func (s *Scanner) Null() bool {
	if s.peek() == 'n' {
		s.i += len("null")
		return true
	}
	return false
}

// Object starts reading an object: true if the next value is one, its
// members to be read with Member. Null is consumed and gives false; any
// other kind gives up.
func (s *Scanner) Object() bool {
	switch s.peek() {
	case '{':
		s.i++
		return true
	case 'n':
		s.i += len("null")
	case 0:
	default:
		s.GiveUp("want an object")
	}
	return false
}

// Member reads the next member name of the object being read, leaving its
// value next; false at the end of the object. The name is the raw text
// between the quotes, escapes not decoded, valid only until the next read.
func (s *Scanner) Member() ([]byte, bool) {
	switch s.peek() {
	case '}':
		s.i++
		return nil, false
	case ',':
		s.i++
		s.ws()
	case '"':
	default:
		return nil, false
	}
	start := s.i + 1
	end := s.stringEnd(start)
	s.name = [2]int{start, end}
	s.i = end + 1
	s.ws()
	s.i++ // the name separator
	return s.b[start:end], true
}

// Key is the last member name read by Member, decoded as a map key:
// like a string, escapes decoded and invalid UTF-8 replaced.
func (s *Scanner) Key() string {
	start, end := s.name[0], s.name[1]
	for _, c := range s.b[start:end] {
		if c == '\\' || c >= utf8.RuneSelf {
			var key string
			if err := json.Unmarshal(s.b[start-1:end+1], &key); err != nil {
				s.GiveUp("member name: " + err.Error())
			}
			return key
		}
	}
	return s.cut(s.b[start:end])
}

// Array starts reading an array, its elements to be read with Elem: like
// Object.
func (s *Scanner) Array() bool {
	switch s.peek() {
	case '[':
		s.i++
		return true
	case 'n':
		s.i += len("null")
	case 0:
	default:
		s.GiveUp("want an array")
	}
	return false
}

// Elem reports whether the array being read has another element, and
// leaves it next.
func (s *Scanner) Elem() bool {
	switch s.peek() {
	case ']':
		s.i++
		return false
	case ',':
		s.i++
		return true
	case 0:
		return false
	}
	return true
}

// String reads a string as a new Go string, as encoding/json decodes it
// (escapes decoded, invalid UTF-8 replaced). Null gives "", false; any
// other kind gives up.
func (s *Scanner) String() (string, bool) {
	switch s.peek() {
	case '"':
	case 'n':
		s.i += len("null")
		return "", false
	case 0:
		return "", false
	default:
		s.GiveUp("want a string")
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		if c == '"' {
			s.i = j + 1
			return s.cut(s.b[start:j]), true
		}
		if c == '\\' || c >= utf8.RuneSelf {
			return s.slowString(start)
		}
	}
	s.GiveUp("unterminated string")
	return "", false
}

// slowString decodes a string with escapes or non-ASCII text with
// encoding/json; rare enough that its cost does not matter.
func (s *Scanner) slowString(start int) (string, bool) {
	end := s.stringEnd(start)
	raw := s.b[start-1 : end+1]
	s.i = end + 1
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		s.GiveUp("string: " + err.Error())
		return "", false
	}
	return out, true
}

// stringEnd is the index of the quote that ends the string whose text
// starts at start. Most strings are short: a plain loop beats IndexByte.
func (s *Scanner) stringEnd(start int) int {
	b := s.b
	j := start
	for j < len(b) {
		switch b[j] {
		case '"':
			return j
		case '\\':
			j++ // whatever is escaped, it is not the end
		}
		j++
	}
	return len(b) - 1
}

// Bool reads true or false. Null gives false, false; any other kind gives
// up.
func (s *Scanner) Bool() (v, ok bool) {
	switch s.peek() {
	case 't':
		s.i += len("true")
		return true, true
	case 'f':
		s.i += len("false")
		return false, true
	case 'n':
		s.i += len("null")
	case 0:
	default:
		s.GiveUp("want a boolean")
	}
	return false, false
}

// Int64 reads an integer that fits in an int64, written without fraction
// or exponent as encoding/json requires of one (it uses strconv.ParseInt
// too). Null gives 0, false; any other value gives up.
func (s *Scanner) Int64() (int64, bool) {
	switch c := s.peek(); {
	case c == 'n':
		s.i += len("null")
		return 0, false
	case c != '-' && (c < '0' || c > '9'):
		s.GiveUp("want an integer")
		return 0, false
	}
	start := s.i
	s.Skip()
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		s.GiveUp("want an integer in range: " + err.Error())
		return 0, false
	}
	return v, true
}

// Raw reads the next value, whatever it is, and returns its text: a slice
// of the input, not a copy.
func (s *Scanner) Raw() []byte {
	s.ws()
	start := s.i
	s.Skip()
	return s.b[start:s.i]
}

// Bytes is the input from start to end, offsets as Offset gives them: a
// slice of the input, not a copy.
func (s *Scanner) Bytes(start, end int) []byte { return s.b[start:end] }

// Skip reads past the next value, whatever it is.
func (s *Scanner) Skip() {
	s.ws()
	if s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '"':
		s.i = s.stringEnd(s.i+1) + 1
	case '{', '[':
		s.skipContainer()
	default:
		// A number or a literal ends at a delimiter or whitespace.
		for s.i < len(s.b) && !isDelim[s.b[s.i]] {
			s.i++
		}
	}
}

// skipContainer reads past the object or array at s.i. In valid text
// brackets balance outside strings, so counting them is enough.
func (s *Scanner) skipContainer() {
	b := s.b
	depth := 0
	for j := s.i; j < len(b); j++ {
		c := b[j]
		if !isStructural[c] {
			continue
		}
		switch c {
		case '"':
			j = s.stringEnd(j + 1)
		case '{', '[':
			depth++
		default:
			depth--
			if depth == 0 {
				s.i = j + 1
				return
			}
		}
	}
	s.i = len(b)
}

// isStructural marks the bytes skipContainer stops at.
var isStructural = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}

// isDelim marks the bytes that end a number or a literal.
var isDelim = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\n': true, '\r': true}

// Unknown handles a member name that matched no field exactly. The exact
// decoder matches names case-insensitively, with Unicode folding, and
// after decoding escapes: a name that might match one of fields that way
// gives up, so that the caller's decoder reads it; any other is skipped
// with its value.
func (s *Scanner) Unknown(name []byte, fields []string) {
	for _, c := range name {
		if c == '\\' || c >= utf8.RuneSelf {
			s.GiveUp("member name " + string(name) + " needs decoding")
			return
		}
	}
	for _, f := range fields {
		if asciiEqualFold(name, f) {
			s.GiveUp("member name " + string(name) + " matches " + f + " only case-insensitively")
			return
		}
	}
	s.Skip()
}

// Once marks field number bit of a struct as read, giving up if it was
// already: encoding/json merges a repeated member into the first, which
// a scanner does not try to imitate.
func (s *Scanner) Once(seen *uint64, bit uint) bool {
	if *seen&(1<<bit) != 0 {
		s.GiveUp("repeated member")
		return false
	}
	*seen |= 1 << bit
	return true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
