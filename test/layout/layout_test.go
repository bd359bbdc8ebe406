// Package layout holds the project's layout to what its documentation says:
// the policy engine is pure, the read path (the informer cache) never
// writes, and only the controllers and the quota ledger write to the API
// server.
package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

const module = "github.com/policy-webhook/policy-webhook"

// goList runs go list in the repository with args.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// The engine under policy/ takes no part in HTTP, clients or controllers,
// and links no REST client: it is the same offline (check) and live.
func TestPolicyIsPure(t *testing.T) {
	for _, pkg := range goList(t, "./policy/...") {
		for _, imp := range goList(t, "-f", `{{join .Imports " "}}`, pkg) {
			if imp == "net/http" || strings.HasPrefix(imp, "k8s.io/client-go/") || strings.HasPrefix(imp, "sigs.k8s.io/controller-runtime") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
		if slices.Contains(goList(t, "-deps", pkg), "k8s.io/client-go/rest") {
			t.Errorf("%s links k8s.io/client-go/rest", pkg)
		}
	}
}

// writeVerbs are the client methods that change what the API server holds.
var writeVerbs = []string{"Create", "Update", "UpdateStatus", "Patch", "Apply", "ApplyStatus", "Delete", "DeleteCollection"}

// mayWrite are the packages allowed to write to the API server.
func mayWrite(pkg string) bool {
	return pkg == module+"/controllers" || strings.HasPrefix(pkg, module+"/controllers/") || pkg == module+"/quota"
}

// Only the controllers and the quota ledger write to the API server; in
// particular no package that runs informers does. A call of a write verb on
// anything but an imported package (os.Create is a file) counts as a
// write: the check is syntactic, so a method of that name elsewhere has to
// be named otherwise.
func TestOnlyControllersWrite(t *testing.T) {
	pkgs := goList(t, "-f", "{{.ImportPath}}={{.Dir}}={{join .GoFiles \",\"}}", "./...")
	checked := 0
	for _, line := range pkgs {
		parts := strings.SplitN(line, "=", 3)
		pkg, dir, files := parts[0], parts[1], strings.Split(parts[2], ",")
		rel := strings.TrimPrefix(pkg, module+"/")
		if strings.HasPrefix(rel, "hack/") || strings.HasPrefix(rel, "test/") || mayWrite(pkg) || parts[2] == "" {
			continue
		}
		for _, f := range files {
			checked++
			for _, w := range writes(t, filepath.Join(dir, f)) {
				t.Errorf("%s writes to the API server: %s", pkg, w)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no file checked")
	}
}

// writes lists the calls of write verbs in a file, as file:line text.
func writes(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	imported := map[string]bool{}
	for _, imp := range file.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := p[strings.LastIndex(p, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		imported[name] = true
	}
	var out []string
	ast.Inspect(file, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !slices.Contains(writeVerbs, sel.Sel.Name) {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && imported[id.Name] {
			return true
		}
		// A review (SelfSubjectReviews().Create, TokenReviews().Create) is
		// a question the API server answers; it stores nothing.
		if inner, ok := sel.X.(*ast.CallExpr); ok {
			if f, ok := inner.Fun.(*ast.SelectorExpr); ok && strings.HasSuffix(f.Sel.Name, "Reviews") {
				return true
			}
		}
		out = append(out, fset.Position(call.Pos()).String())
		return true
	})
	return out
}

// The check finds the writes it is there to find.
func TestWritesFound(t *testing.T) {
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got := writes(t, filepath.Join(root, "controllers", "lastgood.go")); len(got) != 3 {
		t.Errorf("writes in controllers/lastgood.go: %v, want its Create and Update of the ConfigMap and Create of the key", got)
	}
}
