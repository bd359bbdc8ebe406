package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func scanner(t testing.TB, text string) *Scanner {
	t.Helper()
	if !Valid([]byte(text)) {
		t.Fatalf("test input %q is not valid JSON", text)
	}
	var s Scanner
	s.Reset([]byte(text))
	return &s
}

// TestReadsAsEncodingJSON: every value a scanner reads is the value
// encoding/json decodes from the same text into the same Go type.
func TestReadsAsEncodingJSON(t *testing.T) {
	for _, text := range []string{
		`"plain"`, `""`, `"caf\u00e9 \"q\" \\ \/ \n"`, "\"\xff\xfe invalid\"", `"日本"`, `"\ud800 lone surrogate"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(text), &want); err != nil {
			t.Fatal(err)
		}
		s := scanner(t, text)
		if got, ok := s.String(); !ok || got != want || s.Failed() {
			t.Errorf("String(%s) = %q, %v (%s); encoding/json: %q", text, got, ok, s.Reason(), want)
		}
	}
	for _, text := range []string{`0`, `-0`, `42`, `-42`, `9223372036854775807`, `-9223372036854775808`} {
		var want int64
		if err := json.Unmarshal([]byte(text), &want); err != nil {
			t.Fatal(err)
		}
		s := scanner(t, text)
		if got, ok := s.Int64(); !ok || got != want || s.Failed() {
			t.Errorf("Int64(%s) = %d, %v (%s); encoding/json: %d", text, got, ok, s.Reason(), want)
		}
	}
	for _, text := range []string{`true`, `false`} {
		s := scanner(t, text)
		if got, ok := s.Bool(); !ok || got != (text == "true") {
			t.Errorf("Bool(%s) = %v, %v", text, got, ok)
		}
	}
}

// TestGivesUp: where encoding/json would do something the scanner does
// not imitate, or refuse the value, the scanner gives up rather than guess.
func TestGivesUp(t *testing.T) {
	for _, c := range []struct {
		text string
		read func(*Scanner)
		why  string
	}{
		{`1.5`, func(s *Scanner) { s.Int64() }, "want an integer"},
		{`1e3`, func(s *Scanner) { s.Int64() }, "want an integer"},
		{`9223372036854775808`, func(s *Scanner) { s.Int64() }, "out of range"},
		{`-9223372036854775809`, func(s *Scanner) { s.Int64() }, "out of range"},
		{`"1"`, func(s *Scanner) { s.Int64() }, "want an integer"},
		{`1`, func(s *Scanner) { s.String() }, "want a string"},
		{`{}`, func(s *Scanner) { s.String() }, "want a string"},
		{`"true"`, func(s *Scanner) { s.Bool() }, "want a boolean"},
		{`[]`, func(s *Scanner) { s.Object() }, "want an object"},
		{`{}`, func(s *Scanner) { s.Array() }, "want an array"},
		{`{"Name":1}`, func(s *Scanner) { readObject(s, []string{"name"}) }, "only case-insensitively"},
		{`{"na\u006de":1}`, func(s *Scanner) { readObject(s, []string{"name"}) }, "needs decoding"},
		{`{"ſpec":1}`, func(s *Scanner) { readObject(s, []string{"spec"}) }, "needs decoding"},
		{`{"name":1,"name":2}`, func(s *Scanner) { readObject(s, []string{"name"}) }, "repeated member"},
	} {
		s := scanner(t, c.text)
		c.read(s)
		if !s.Failed() || !strings.Contains(s.Reason(), c.why) {
			t.Errorf("%s: reason %q, want one saying %q", c.text, s.Reason(), c.why)
		}
		// Once given up, reads end at once.
		if s.Offset() != len(c.text) || s.Object() || s.Array() || s.Elem() {
			t.Errorf("%s: still reading after giving up", c.text)
		}
		if _, ok := s.Member(); ok {
			t.Errorf("%s: a member after giving up", c.text)
		}
	}
}

// readObject reads an object whose known member is fields[0] once, and
// skips the others as a caller does.
func readObject(s *Scanner, fields []string) {
	var seen uint64
	if !s.Object() {
		return
	}
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		if string(name) == fields[0] {
			if s.Once(&seen, 0) {
				s.Skip()
			}
			continue
		}
		s.Unknown(name, fields)
	}
}

// TestNulls: null reads as absent, as encoding/json leaves a field.
func TestNulls(t *testing.T) {
	s := scanner(t, `[null,null,null,null,null,null]`)
	if !s.Array() {
		t.Fatal("not an array")
	}
	s.Elem()
	if _, ok := s.String(); ok {
		t.Error("String(null) present")
	}
	s.Elem()
	if _, ok := s.Bool(); ok {
		t.Error("Bool(null) present")
	}
	s.Elem()
	if _, ok := s.Int64(); ok {
		t.Error("Int64(null) present")
	}
	s.Elem()
	if s.Object() {
		t.Error("Object(null) is an object")
	}
	s.Elem()
	if s.Array() {
		t.Error("Array(null) is an array")
	}
	s.Elem()
	if !s.Null() {
		t.Error("Null(null) false")
	}
	if s.Elem() || s.Failed() || s.Offset() != len(s.b) {
		t.Errorf("array not ended cleanly: %q at %d", s.Reason(), s.Offset())
	}
}

// TestWalk reads a nested document with every kind of value and
// whitespace between tokens, member by member, skipping what it does not
// read, and gets back to the end with each value as written.
func TestWalk(t *testing.T) {
	text := " { \"a\" : [ 1 , \"x\\\"]}\" , { \"b\" : null } , [ ] , true ] ,\n\"skip\":{\"d\":[{\"e\":\"}\"}],\"f\":-1.5e+3},\t\"k\\u00e9y\" : \"v\", \"n\": 7 } "
	s := scanner(t, text)
	var got []string
	if !s.Object() {
		t.Fatal("not an object")
	}
	for name, ok := s.Member(); ok; name, ok = s.Member() {
		switch string(name) {
		case "a":
			s.Array()
			for s.Elem() {
				got = append(got, string(s.Raw()))
			}
		case "n":
			n, _ := s.Int64()
			got = append(got, "n="+string(rune('0'+n)))
		default:
			key := s.Key()
			got = append(got, key+"="+string(s.Raw()))
		}
	}
	want := []string{`1`, `"x\"]}"`, `{ "b" : null }`, `[ ]`, `true`,
		`skip={"d":[{"e":"}"}],"f":-1.5e+3}`, `kéy="v"`, `n=7`}
	if strings.Join(got, "|") != strings.Join(want, "|") || s.Failed() {
		t.Errorf("walk read\n%q\nwant\n%q (%s)", got, want, s.Reason())
	}
	if s.Offset() != len(strings.TrimRight(text, " ")) {
		t.Errorf("ended at %d of %d", s.Offset(), len(text))
	}
}

// FuzzSkip: on any valid text, skipping reads exactly one value, and
// walking every object and array by hand ends where skipping does, without
// giving up (nothing read can be refused) and without a panic.
func FuzzSkip(f *testing.F) {
	for _, seed := range []string{`{}`, `[]`, `"a\"b"`, `{"a":[1,{"b":"\\"}],"c":null}`, `-1.5e-3`, " [ true , false ] "} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !Valid(b) {
			return
		}
		var skip, walk Scanner
		skip.Reset(b)
		skip.Skip()
		walk.Reset(b)
		walkValue(&walk)
		if skip.Offset() != walk.Offset() || walk.Failed() {
			t.Fatalf("%q: skip ends at %d, walk at %d (%s)", b, skip.Offset(), walk.Offset(), walk.Reason())
		}
		skip.ws()
		if skip.Offset() != len(b) {
			t.Fatalf("%q: one value ends at %d of %d", b, skip.Offset(), len(b))
		}
	})
}

func walkValue(s *Scanner) {
	switch s.peek() {
	case '{':
		s.Object()
		for _, ok := s.Member(); ok; _, ok = s.Member() {
			s.Key()
			walkValue(s)
		}
	case '[':
		s.Array()
		for s.Elem() {
			walkValue(s)
		}
	case '"':
		s.String()
	default:
		s.Skip()
	}
}

// FuzzString: any valid JSON string reads as encoding/json decodes it.
func FuzzString(f *testing.F) {
	for _, seed := range []string{`"a"`, `"\u00e9\n"`, "\"\xff\"", `"\ud83d\ude00"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want string
		if !Valid(b) || json.Unmarshal(b, &want) != nil || string(bytes.TrimSpace(b)) == "null" {
			return
		}
		var s Scanner
		s.Reset(b)
		got, ok := s.String()
		if !ok || s.Failed() || got != want {
			t.Fatalf("%q: String() = %q, %v (%s); encoding/json %q", b, got, ok, s.Reason(), want)
		}
	})
}
