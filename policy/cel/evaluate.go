package cel

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/cel/lazy"
)

// untimedCostLimit is the estimated worst case, summed over a policy's
// expressions, under which they run without a timer: such expressions cannot
// run long, and an interruptible evaluation is most of what a simple
// validation costs. The expressions past it run under the admission's
// deadline (see Budget); the others are held to it between evaluations.
const untimedCostLimit = 10_000

// Program is a policy's compiled CEL for one kind, safe for concurrent use.
type Program struct {
	kind       string
	schema     *kindSchema
	varsType   *apiservercel.DeclType
	params     ref.Val
	failOpen   bool
	namespaced bool // a namespace's own policy, held to its tighter limits
	// dynamic: object and oldObject were typed dyn (see Compile), and are
	// plain JSON values, as VAP evaluates them, not values of the schema
	// (whose map lists merge when added and compare regardless of order).
	dynamic     bool
	limits      *Limits
	gate        *Gate
	variables   []compiledVariable
	conditions  []compiledCondition
	validations []compiledValidation
}

// program is one compiled expression.
type program struct {
	cel.Program
	timed bool // runs under the admission's deadline (see untimedCostLimit)
}

type compiledVariable struct {
	name string
	prog program
}

type compiledCondition struct {
	rule string // matchConditions.<name>
	prog program
}

type compiledValidation struct {
	rule        string // validations.<name> or validations[<index>]
	field       string
	message     string
	expression  string
	prog        program
	messageProg program // Program nil without messageExpression
}

// Kind is the kind the program judges.
func (p *Program) Kind() string { return p.kind }

// Limits are the limits the program was compiled under, which an
// admission's Budget takes.
func (p *Program) Limits() Limits { return *p.limits }

// Input is one admission as expressions see it.
type Input struct {
	// Object and OldObject are unstructured objects (int64 integers);
	// nil is null, as oldObject is on CREATE.
	Object, OldObject map[string]any
	Request           Request
	Namespace         Namespace
	// Cluster answers cluster.myApples; nil makes that call an error.
	Cluster Cluster
}

// Request is `request`, the admission request's attributes.
type Request struct {
	Kind        metav1.GroupVersionKind
	Resource    metav1.GroupVersionResource
	SubResource string
	Name        string
	Namespace   string
	Operation   string // CREATE, UPDATE, DELETE, CONNECT
	UserInfo    authenticationv1.UserInfo
	DryRun      bool
}

// Namespace is `namespaceObject`: what the cache holds of the object's
// namespace.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// Violation is a validation the object failed.
type Violation struct {
	Rule    string // validations.<name> or validations[<index>]; matchConditions.<name> when one failed to evaluate
	Field   string // the validation's fieldPath, or ""
	Message string // at most MaxMessageLength bytes
}

// Result is what a program says of one admission.
type Result struct {
	// Judged is false when a matchCondition was false, or failed to
	// evaluate under failurePolicy Ignore: the policy has no say.
	Judged     bool
	Violations []Violation
	// Exhausted names the budget of the admission that ran out in this
	// policy, whatever its failurePolicy: the object was not judged in
	// full, and the caller must refuse it (fail closed).
	Exhausted string
}

// Evaluate judges one admission within what is left of its budget, which
// it spends. It never fails: an expression that fails is a violation with
// the error as message, unless failurePolicy is Ignore. Once the budget is
// spent, the rest is skipped and the Result says which budget ran out.
func (p *Program) Evaluate(b *Budget, in *Input) Result {
	a := &activation{p: p, in: in, b: b}
	if !b.begin(p.namespaced, in.Request.Namespace) {
		return Result{Judged: true, Exhausted: b.out}
	}
	for _, c := range p.conditions {
		v, err := a.eval(c.prog)
		if b.out != "" {
			return Result{Judged: true, Exhausted: b.out}
		}
		if err != nil {
			if p.failOpen {
				return Result{}
			}
			return Result{Judged: true, Violations: []Violation{{
				Rule:    c.rule,
				Message: cut("match condition resulted in error: " + err.Error()),
			}}}
		}
		if v != types.True {
			return Result{}
		}
	}

	res := Result{Judged: true}
	for i := range p.validations {
		v := &p.validations[i]
		val, err := a.eval(v.prog)
		if b.out != "" {
			res.Exhausted = b.out
			return res
		}
		if err != nil {
			if !p.failOpen {
				res.Violations = append(res.Violations, Violation{
					Rule:    v.rule,
					Field:   v.field,
					Message: cut(fmt.Sprintf("expression '%s' resulted in error: %s", strings.TrimSpace(v.expression), err)),
				})
			}
			continue
		}
		if val == types.True {
			continue
		}
		msg := a.message(v)
		if b.out != "" {
			res.Exhausted = b.out
			return res
		}
		res.Violations = append(res.Violations, Violation{Rule: v.rule, Field: v.field, Message: msg})
	}
	return res
}

// message is a failed validation's message: its messageExpression's result
// if that is a non-empty single line, else its message, else VAP's default.
func (a *activation) message(v *compiledValidation) string {
	if v.messageProg.Program != nil {
		if val, err := a.eval(v.messageProg); err == nil {
			if s, ok := val.(types.String); ok && strings.TrimSpace(string(s)) != "" && !strings.ContainsAny(string(s), "\r\n") {
				return cut(string(s))
			}
		}
	}
	if v.message != "" {
		return v.message
	}
	return cut("failed expression: " + strings.TrimSpace(v.expression))
}

// cut bounds a message at MaxMessageLength bytes, on a rune boundary.
func cut(s string) string {
	if len(s) <= MaxMessageLength {
		return s
	}
	const more = "..."
	n := MaxMessageLength - len(more)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + more
}

var errBudget = errors.New("the CEL budget of the admission ran out")

// activation resolves the variables of one evaluation lazily, and spends
// the admission's budget.
type activation struct {
	p  *Program
	in *Input
	b  *Budget

	object, oldObject, request, namespace ref.Val
	vars                                  *lazy.MapValue
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varObject:
		if a.object == nil {
			a.object = a.p.objectVal(a.in.Object)
		}
		return a.object, true
	case varOldObject:
		if a.oldObject == nil {
			a.oldObject = a.p.objectVal(a.in.OldObject)
		}
		return a.oldObject, true
	case varRequest:
		if a.request == nil {
			a.request = requestMap(&a.in.Request)
		}
		return a.request, true
	case varNamespace:
		if a.namespace == nil {
			a.namespace = namespaceVal(&a.in.Namespace)
		}
		return a.namespace, true
	case varParams:
		return a.p.params, true
	case varVariables:
		if a.vars == nil {
			a.vars = a.variables()
		}
		return a.vars, true
	case varCluster:
		return clusterVal{a.in.Cluster}, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// variables evaluates each variable at most once, when first read, with
// its cost charged to the budget.
func (a *activation) variables() *lazy.MapValue {
	m := lazy.NewMapValue(a.p.varsType)
	for _, v := range a.p.variables {
		m.Append(v.name, func(*lazy.MapValue) ref.Val {
			val, err := a.eval(v.prog)
			if err != nil {
				return types.NewErr("variable %q: %v", v.name, err)
			}
			return val
		})
	}
	return m
}

// eval runs one program within what is left of the budget and the time;
// cost is charged between evaluations, as VAP does, each evaluation being
// stopped by its per-expression limit. When the budget runs out, b.out
// says which, and every evaluation after fails.
func (a *activation) eval(prog program) (ref.Val, error) {
	b, ns := a.b, a.p.namespaced
	if !b.begin(ns, a.in.Request.Namespace) {
		return nil, errBudget
	}
	var val ref.Val
	var det *cel.EvalDetails
	var err error
	if prog.timed {
		val, det, err = prog.ContextEval(b.context(ns), a)
	} else {
		val, det, err = prog.Eval(a)
	}
	if det != nil {
		if c := det.ActualCost(); c != nil && !b.charge(ns, *c) {
			return nil, errBudget
		}
	}
	if err != nil {
		if prog.timed && b.timedOut(ns) {
			return nil, errBudget
		}
		return nil, err
	}
	return val, nil
}

// objectVal is obj as the program's expressions read it.
func (p *Program) objectVal(obj map[string]any) ref.Val {
	if !p.dynamic {
		return p.schema.val(obj)
	}
	if obj == nil {
		return types.NullValue
	}
	return types.DefaultTypeAdapter.NativeToValue(obj)
}

// val wraps an object without copying it, as the VAP plugin does.
func (k *kindSchema) val(obj map[string]any) ref.Val {
	if obj == nil {
		return types.NullValue
	}
	return common.UnstructuredToVal(obj, k.wrapped)
}

func requestMap(r *Request) ref.Val {
	extra := make(map[string][]string, len(r.UserInfo.Extra))
	for k, v := range r.UserInfo.Extra {
		extra[k] = v
	}
	groups := r.UserInfo.Groups
	if groups == nil {
		groups = []string{}
	}
	return types.DefaultTypeAdapter.NativeToValue(map[string]any{
		"kind":        map[string]any{"group": r.Kind.Group, "version": r.Kind.Version, "kind": r.Kind.Kind},
		"resource":    map[string]any{"group": r.Resource.Group, "version": r.Resource.Version, "resource": r.Resource.Resource},
		"subResource": r.SubResource,
		"name":        r.Name,
		"namespace":   r.Namespace,
		"operation":   r.Operation,
		"userInfo": map[string]any{
			"username": r.UserInfo.Username,
			"uid":      r.UserInfo.UID,
			"groups":   groups,
			"extra":    extra,
		},
		"dryRun": r.DryRun,
	})
}

func namespaceVal(n *Namespace) ref.Val {
	labels, annotations := n.Labels, n.Annotations
	if labels == nil {
		labels = map[string]string{}
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	return types.DefaultTypeAdapter.NativeToValue(map[string]any{
		"metadata": map[string]any{"name": n.Name, "labels": labels, "annotations": annotations},
	})
}
