package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one object read from a file, with where it came from.
type Document struct {
	// Where is "<file>: document <n>", with "items[<i>]" for members of a List.
	Where      string
	APIVersion string
	Kind       string
	// Raw is the object as JSON.
	Raw []byte
}

type header struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// ReadFile reads every document of a YAML or JSON file; name "-" is stdin.
func ReadFile(name string, stdin io.Reader) ([]Document, error) {
	if name == "-" {
		return ReadDocuments("<stdin>", stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	return ReadDocuments(name, f)
}

// ReadDocuments splits a YAML or JSON stream into documents, expanding Lists.
// Empty documents are skipped but counted, so indexes match an editor's.
func ReadDocuments(name string, r io.Reader) ([]Document, error) {
	br := bufio.NewReader(r)
	var out []Document
	add := func(index int, raw []byte) error {
		docs, err := documents(fmt.Sprintf("%s: document %d", name, index), raw)
		if err != nil {
			return err
		}
		out = append(out, docs...)
		return nil
	}
	if isJSON(br) {
		dec := json.NewDecoder(br)
		for i := 1; ; i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				return out, nil
			} else if err != nil {
				return nil, fmt.Errorf("%s: document %d: invalid JSON: %w", name, i, err)
			}
			if err := add(i, raw); err != nil {
				return nil, err
			}
		}
	}
	yr := utilyaml.NewYAMLReader(br)
	for i := 1; ; i++ {
		chunk, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: reading YAML: %w", name, i, err)
		}
		raw, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: invalid YAML: %w", name, i, err)
		}
		if err := add(i, raw); err != nil {
			return nil, err
		}
	}
}

// isJSON peeks at the first significant byte: concatenated JSON objects need
// a JSON decoder.
func isJSON(br *bufio.Reader) bool {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if err != nil || len(b) < n {
			return false
		}
		switch c := b[n-1]; c {
		case ' ', '\t', '\r', '\n':
			continue
		default:
			return c == '{' || c == '['
		}
	}
}

func documents(where string, raw []byte) ([]Document, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return expand(where, items)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%s: not a Kubernetes object: %w", where, err)
	}
	if h.Kind == "" {
		return nil, fmt.Errorf("%s: kind: required field is missing", where)
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		return expand(where, h.Items)
	}
	return []Document{{Where: where, APIVersion: h.APIVersion, Kind: h.Kind, Raw: raw}}, nil
}

func expand(where string, items []json.RawMessage) ([]Document, error) {
	var out []Document
	for i, item := range items {
		docs, err := documents(fmt.Sprintf("%s: items[%d]", where, i), item)
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	return out, nil
}

// ReadPaths reads files, and the .yaml, .yml and .json files under
// directories in lexical order.
func ReadPaths(paths []string, stdin io.Reader) ([]Document, error) {
	var out []Document
	for _, p := range paths {
		files, err := expandPath(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			docs, err := ReadFile(f, stdin)
			if err != nil {
				return nil, err
			}
			out = append(out, docs...)
		}
	}
	return out, nil
}

func expandPath(p string) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	info, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", p, err)
	}
	if len(files) == 0 {
		return nil, errors.New("reading directory " + p + ": no .yaml, .yml or .json files in it")
	}
	sort.Strings(files)
	return files, nil
}
