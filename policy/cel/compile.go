package cel

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"strings"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/version"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/policy-webhook/policy-webhook/apis/policy/v1alpha1"
)

// Kinds whose objects expressions can judge; package policy re-exports them.
const (
	KindPod     = "Pod"
	KindMyApple = "MyApple"
)

// EnvironmentVersion is the Kubernetes CEL environment version expressions
// compile against, whatever k8s.io/apiserver is linked. Lowering it could
// refuse policies in force.
const EnvironmentVersion = "1.37"

// Bounds on a policy's CEL parts; the AdmissionPolicy CRD carries the same.
const (
	MaxExpressionLength = 4096 // bytes, per expression and messageExpression
	MaxMessageLength    = 1024 // bytes, per message, and the cut of evaluated ones
	MaxEntries          = 64   // variables, matchConditions, validations each
	maxFieldPathLength  = 256
)

const (
	varObject    = "object"
	varOldObject = "oldObject"
	varRequest   = "request"
	varNamespace = "namespaceObject"
	varParams    = "params"
	varVariables = "variables"
	varCluster   = "cluster"
)

var identifier = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Compiler compiles the CEL parts of policies, with one environment per
// kind built by NewCompiler. It is safe for concurrent use.
type Compiler struct {
	kinds  map[string]*kindEnv
	limits Limits
	gate   *Gate // of every program compiled here
	// applesBound is the most MyApples a namespace holds now; nil: none
	// known (see WithMyApplesBound).
	applesBound func() int
}

// WithMyApplesBound is c estimating cluster.myApples, and the colors and
// sizes of cluster.myAppleStats, at the most MyApples a namespace holds
// now (bound, read at each Compile), when that is more than 10,000: what
// an expression may meet, so that a policy applied over a large namespace
// is estimated at its size.
func (c *Compiler) WithMyApplesBound(bound func() int) *Compiler {
	cc := *c
	cc.applesBound = bound
	return &cc
}

// myApplesEstimate is the number of MyApples a namespace is estimated to
// hold.
func (c *Compiler) myApplesEstimate() uint64 {
	n := maxApplesEstimate
	if c.applesBound != nil {
		n = max(n, c.applesBound())
	}
	return uint64(n)
}

type kindEnv struct {
	schema *kindSchema
	apple  *apiservercel.DeclType
	// envSet types object and oldObject by the kind's schema; dynEnvSet
	// types them dyn, as VAP does (see Compile).
	envSet, dynEnvSet *environment.EnvSet
	roots             map[string]*apiservercel.DeclType // for cost estimation
	types             map[string]*apiservercel.DeclType // every named type, by name
	// schemaTyping matches a CEL issue that is a mismatch of the kind's
	// schema object types (see Compile).
	schemaTyping *regexp.Regexp
}

// NewCompiler builds the environments of every kind, with DefaultLimits.
func NewCompiler() (*Compiler, error) { return NewCompilerWithLimits(DefaultLimits()) }

// NewCompilerWithLimits builds the environments of every kind; its
// programs are held to limits (zero fields are the defaults).
func NewCompilerWithLimits(limits Limits) (*Compiler, error) {
	limits = limits.WithDefaults()
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	pod, err := podSchema()
	if err != nil {
		return nil, err
	}
	apple, err := myAppleSchema(pod)
	if err != nil {
		return nil, err
	}
	c := &Compiler{kinds: map[string]*kindEnv{}, limits: limits, gate: newGate(limits.NamespaceConcurrency)}
	for kind, s := range map[string]*spec.Schema{KindPod: pod, KindMyApple: apple} {
		ks, err := newKindSchema(kind, s)
		if err != nil {
			return nil, err
		}
		ke, err := newKindEnv(ks)
		if err != nil {
			return nil, fmt.Errorf("building the CEL environment for %s: %w", kind, err)
		}
		c.kinds[kind] = ke
	}
	return c, nil
}

func newKindEnv(ks *kindSchema) (*kindEnv, error) {
	req, ns, apple, stats := requestType(), namespaceType(), appleType(), appleStatsType()
	decls := []*apiservercel.DeclType{ks.declType, req, ns, apple, stats}
	envSet := func(objType *cel.Type) (*environment.EnvSet, error) {
		return environment.MustBaseEnvSet(version.MustParseGeneric(EnvironmentVersion)).Extend(environment.VersionedOptions{
			// Present at every version, as VAP's variables are.
			IntroducedVersion: version.MajorMinor(1, 0),
			EnvOptions: []cel.EnvOption{
				cel.Variable(varObject, objType),
				cel.Variable(varOldObject, objType),
				cel.Variable(varRequest, req.CelType()),
				cel.Variable(varNamespace, ns.CelType()),
				cel.Variable(varParams, cel.DynType),
				cel.Variable(varCluster, clusterCELType),
				clusterLib(apple.CelType(), stats.CelType()),
			},
			DeclTypes: decls,
		})
	}
	typed, err := envSet(ks.declType.CelType())
	if err != nil {
		return nil, err
	}
	dyn, err := envSet(cel.DynType)
	if err != nil {
		return nil, err
	}
	named := map[string]*apiservercel.DeclType{}
	for _, d := range decls {
		maps.Copy(named, apiservercel.FieldTypeMap(d.TypeName(), d))
	}
	name := regexp.QuoteMeta(ks.declType.TypeName())
	return &kindEnv{
		schema:    ks,
		apple:     apple,
		envSet:    typed,
		dynEnvSet: dyn,
		roots: map[string]*apiservercel.DeclType{
			varObject: ks.declType, varOldObject: ks.declType, varRequest: req, varNamespace: ns,
		},
		types: named,
		// cel-go: found no matching overload for '_+_' applied to
		// '(list(Pod.spec.containers.@idx), list(Pod.spec.initContainers.@idx))'
		schemaTyping: regexp.MustCompile(`^found no matching overload for '[^']*' applied to '.*[(, ]` + name + `[.,)]`),
	}, nil
}

// HasCEL says whether a policy has CEL parts to compile.
func HasCEL(spec *v1alpha1.PolicySpec) bool {
	return len(spec.Validations) > 0 || len(spec.MatchConditions) > 0 || len(spec.Variables) > 0 ||
		spec.Params != nil || spec.FailurePolicy != nil
}

// Limits are the limits the compiler holds programs to.
func (c *Compiler) Limits() Limits { return c.limits }

// CompileOption configures one Compile.
type CompileOption func(*compileOptions)

type compileOptions struct{ namespaced bool }

// Namespaced compiles a namespace's own policy (a ConfigMap outside the
// policy namespace), held to the tighter limits of Limits.
func Namespaced(namespaced bool) CompileOption {
	return func(o *compileOptions) { o.namespaced = namespaced }
}

// Compile compiles the CEL parts of spec for objects of kind, with params
// the policy's params as k8s.io/apimachinery/pkg/util/json decodes them.
// Every problem is returned, by field path relative to the spec. A spec
// without validations compiles to a nil Program.
//
// Expressions are checked with object and oldObject typed by the kind's
// schema, which finds unknown fields and type mistakes when the policy is
// applied. VAP types them dyn (its schema check only warns), and some
// idioms of VAP policies type-check only so:
// `object.spec.containers + object.spec.?initContainers.orValue([])` (two
// list types) or `c.?securityContext.orValue({})` (an object type and a
// map). When the only problems of a policy are such mismatches of the
// schema's object types, which an object, being JSON, does not have, the
// policy is compiled again as VAP compiles it, object and oldObject dyn
// and evaluated as plain JSON values, as VAP evaluates them, and its
// errors, if any, are returned (the mismatches forgiven, what else is
// wrong: a cost, a result type). Unknown fields, mismatches of scalars,
// and every other error of the typed check are refused as they are. Within
// the expression of a mismatch the schema checks no more than VAP: a field
// of `c` in `(a + b).all(c, ...)` is known at runtime.
func (c *Compiler) Compile(kind string, spec *v1alpha1.PolicySpec, params any, opts ...CompileOption) (*Program, field.ErrorList) {
	var o compileOptions
	for _, opt := range opts {
		opt(&o)
	}
	ke := c.kinds[kind]
	if ke == nil {
		return nil, field.ErrorList{field.NotSupported(field.NewPath("match", "kinds"), kind, []string{KindPod, KindMyApple})}
	}
	var errs field.ErrorList
	failurePolicy := v1alpha1.Fail
	if spec.FailurePolicy != nil {
		switch *spec.FailurePolicy {
		case v1alpha1.Fail, v1alpha1.Ignore:
			failurePolicy = *spec.FailurePolicy
		default:
			errs = append(errs, field.NotSupported(field.NewPath("failurePolicy"), *spec.FailurePolicy,
				[]string{string(v1alpha1.Fail), string(v1alpha1.Ignore)}))
		}
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"variables", len(spec.Variables)}, {"matchConditions", len(spec.MatchConditions)}, {"validations", len(spec.Validations)}} {
		if l.n > MaxEntries {
			errs = append(errs, field.TooMany(field.NewPath(l.name), l.n, MaxEntries))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p, errs, typingOnly := c.compile(kind, ke, spec, params, failurePolicy, &o, false)
	if len(errs) == 0 || !typingOnly {
		return p, errs
	}
	p, errs, _ = c.compile(kind, ke, spec, params, failurePolicy, &o, true)
	return p, errs
}

// compile compiles spec once, object and oldObject typed by the schema or
// dyn. typingOnly says that the errors, if any, are all mismatches of the
// schema's object types.
func (c *Compiler) compile(kind string, ke *kindEnv, spec *v1alpha1.PolicySpec, params any, failurePolicy v1alpha1.FailurePolicy, o *compileOptions, dynamic bool) (*Program, field.ErrorList, bool) {
	var errs field.ErrorList
	// variables gets a field per variable as each compiles, so that an
	// expression sees only the variables before it, as in VAP.
	varsType := apiservercel.NewObjectType("kubernetes.variables", map[string]*apiservercel.DeclField{})
	base := ke.envSet
	if dynamic {
		base = ke.dynEnvSet
	}
	envSet, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        []cel.EnvOption{cel.Variable(varVariables, varsType.CelType())},
		DeclTypes:         []*apiservercel.DeclType{varsType},
	})
	if err != nil {
		return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("extending the CEL environment: %w", err))}, false
	}
	env, err := envSet.Env(environment.NewExpressions)
	if err != nil {
		return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("loading the CEL environment: %w", err))}, false
	}
	roots := maps.Clone(ke.roots)
	roots[varVariables] = varsType
	// A variable that is a path from a root has that root's type for the
	// expressions after it; from a dyn object, dyn. Its size is the path's
	// either way, by its alias.
	typeRoots := roots
	if dynamic {
		typeRoots = maps.Clone(roots)
		delete(typeRoots, varObject)
		delete(typeRoots, varOldObject)
	}
	aliases := map[string][]string{}
	apples := c.myApplesEstimate()
	cc := &compilation{
		env:        env,
		worst:      newCostEstimator(roots, params, aliases, false, apples),
		sure:       newCostEstimator(roots, params, aliases, true, apples),
		costLimit:  c.limits.expressionCost(o.namespaced),
		namespaced: o.namespaced,
	}
	if !dynamic {
		cc.schemaTyping = ke.schemaTyping
	}

	p := &Program{
		kind:       kind,
		schema:     ke.schema,
		varsType:   varsType,
		failOpen:   failurePolicy == v1alpha1.Ignore,
		namespaced: o.namespaced,
		limits:     &c.limits,
		gate:       c.gate,
		params:     types.NullValue,
		dynamic:    dynamic,
	}
	if params != nil {
		if err := checkJSONValue(params); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("params"), field.OmitValueType{}, err.Error()))
		} else {
			p.params = paramsVal(params)
		}
	}

	seen := sets.New[string]()
	for i, v := range spec.Variables {
		path := field.NewPath("variables").Index(i)
		switch {
		case !identifier.MatchString(v.Name):
			errs = append(errs, field.Invalid(path.Child("name"), v.Name, "must be a CEL identifier: a letter or _, then letters, digits or _"))
		case seen.Has(v.Name):
			errs = append(errs, field.Duplicate(path.Child("name"), v.Name))
		}
		seen.Insert(v.Name)
		prog, ast, ferr := cc.compile(path.Child("expression"), v.Expression, nil)
		var dt *apiservercel.DeclType
		if ferr != nil {
			errs = append(errs, ferr)
			dt = apiservercel.DynType
		} else {
			if path := exprPath(ast.NativeRep().Expr()); len(path) > 0 && (path[0] == varParams || path[0] == varObject || path[0] == varOldObject) {
				aliases[v.Name] = path
			}
			if dt = ke.pathDeclType(ast.NativeRep().Expr(), typeRoots, apples); dt == nil {
				dt = ke.declTypeOf(ast.OutputType())
			}
		}
		varsType.Fields[v.Name] = apiservercel.NewDeclField(v.Name, dt, true, nil, nil)
		p.variables = append(p.variables, compiledVariable{name: v.Name, prog: prog})
	}

	seen = sets.New[string]()
	for i, m := range spec.MatchConditions {
		path := field.NewPath("matchConditions").Index(i)
		switch {
		case m.Name == "":
			errs = append(errs, field.Required(path.Child("name"), ""))
		case seen.Has(m.Name):
			errs = append(errs, field.Duplicate(path.Child("name"), m.Name))
		}
		seen.Insert(m.Name)
		prog, _, ferr := cc.compile(path.Child("expression"), m.Expression, cel.BoolType)
		if ferr != nil {
			errs = append(errs, ferr)
		}
		p.conditions = append(p.conditions, compiledCondition{rule: "matchConditions." + m.Name, prog: prog})
	}

	seen = sets.New[string]()
	for i, v := range spec.Validations {
		path := field.NewPath("validations").Index(i)
		cv := compiledValidation{
			rule:       fmt.Sprintf("validations[%d]", i),
			field:      v.FieldPath,
			message:    v.Message,
			expression: v.Expression,
		}
		if v.Name != "" {
			cv.rule = "validations." + v.Name
			if seen.Has(v.Name) {
				errs = append(errs, field.Duplicate(path.Child("name"), v.Name))
			}
			seen.Insert(v.Name)
		}
		if len(v.Message) > MaxMessageLength {
			errs = append(errs, field.TooLong(path.Child("message"), "", MaxMessageLength))
		} else if strings.ContainsAny(v.Message, "\r\n") {
			errs = append(errs, field.Invalid(path.Child("message"), v.Message, "must be one line"))
		}
		if len(v.FieldPath) > maxFieldPathLength {
			errs = append(errs, field.TooLong(path.Child("fieldPath"), "", maxFieldPathLength))
		}
		var ferr *field.Error
		cv.prog, _, ferr = cc.compile(path.Child("expression"), v.Expression, cel.BoolType)
		if ferr != nil {
			errs = append(errs, ferr)
		}
		if v.MessageExpression != "" {
			cv.messageProg, _, ferr = cc.compile(path.Child("messageExpression"), v.MessageExpression, cel.StringType)
			if ferr != nil {
				errs = append(errs, ferr)
			}
		}
		p.validations = append(p.validations, cv)
	}
	if len(errs) > 0 {
		return nil, errs, cc.typingErrs == len(errs)
	}
	if len(p.validations) == 0 {
		return nil, nil, false
	}
	return p, nil, false
}

// compilation is the state of one Compile call.
type compilation struct {
	env *cel.Env
	// worst sizes the object as large as a request can make it; sure sizes
	// only what is known (params), everything else empty.
	worst, sure *costEstimator
	costLimit   uint64 // per expression, of the policy's scope
	namespaced  bool
	untimedCost uint64 // estimated worst case of the untimed expressions
	// schemaTyping matches an issue that is a mismatch of the schema's
	// object types; typingErrs counts the expressions whose every issue
	// is one.
	schemaTyping *regexp.Regexp
	typingErrs   int
}

// compile compiles one expression; want nil accepts any result type.
func (cc *compilation) compile(path *field.Path, expr string, want *cel.Type) (program, *cel.Ast, *field.Error) {
	if strings.TrimSpace(expr) == "" {
		return program{}, nil, field.Required(path, "")
	}
	if len(expr) > MaxExpressionLength {
		return program{}, nil, field.TooLong(path, "", MaxExpressionLength)
	}
	ast, iss := cc.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		if cc.schemaTypingOnly(iss) {
			cc.typingErrs++
		}
		return program{}, nil, field.Invalid(path, expr, issuesDetail(iss))
	}
	out := ast.OutputType()
	if want != nil && !out.IsExactType(want) {
		return program{}, nil, field.Invalid(path, expr, fmt.Sprintf("must evaluate to %s, not %s", want, out))
	}
	if scanInLoop(ast.NativeRep().Expr()) {
		return program{}, nil, field.Forbidden(path,
			"cluster.myApples inside a loop lists the namespace once per element: list it once (as the loop's range, or in a variable), or read counts and quantity sums from cluster.myAppleStats")
	}
	// What the object makes an expression cost is held at runtime, by the
	// per-expression limit and the admission's budget, as VAP holds it: a
	// worst case no real object reaches refuses nothing. What its params
	// alone make it cost is known now, and refused if over the limit.
	sure, err := cc.env.EstimateCost(ast, cc.sure)
	if err != nil {
		return program{}, nil, field.InternalError(path, fmt.Errorf("estimating the cost with the params: %w", err))
	}
	if sure.Max != math.MaxUint64 && sure.Max > cc.costLimit {
		return program{}, nil, field.Forbidden(path, fmt.Sprintf(
			"estimated cost %d, with these params and whatever the object, exceeds the limit of %d per expression of %s: no evaluation could finish; loop over fewer params, or not over params within a loop over params",
			sure.Max, cc.costLimit, scopeName(cc.namespaced)))
	}
	est, err := cc.env.EstimateCost(ast, cc.worst)
	if err != nil {
		return program{}, nil, field.InternalError(path, fmt.Errorf("estimating the cost: %w", err))
	}
	prog, err := cc.env.Program(ast,
		cel.CostTracking(cc.worst),
		cel.CostLimit(cc.costLimit),
		cel.InterruptCheckFrequency(celconfig.CheckFrequency))
	if err != nil {
		return program{}, nil, field.InternalError(path, fmt.Errorf("planning the program: %w", err))
	}
	p := program{Program: prog}
	if est.Max <= untimedCostLimit-cc.untimedCost {
		cc.untimedCost += est.Max
	} else {
		p.timed = true
	}
	return p, ast, nil
}

// schemaTypingOnly says whether every issue is a mismatch of the schema's
// object types.
func (cc *compilation) schemaTypingOnly(iss *cel.Issues) bool {
	if cc.schemaTyping == nil {
		return false
	}
	for _, e := range iss.Errors() {
		if !cc.schemaTyping.MatchString(e.Message) {
			return false
		}
	}
	return true
}

func scopeName(namespaced bool) string {
	if namespaced {
		return "a namespace's own policy"
	}
	return "a cluster-wide policy"
}

// pathDeclType is the DeclType of a variable whose expression is a path
// from a variable or a cluster.myApples call, keeping the schema's size
// bounds for cost estimation. Nil for any other expression.
func (ke *kindEnv) pathDeclType(e celast.Expr, roots map[string]*apiservercel.DeclType, apples uint64) *apiservercel.DeclType {
	switch e.Kind() {
	case celast.IdentKind:
		return roots[e.AsIdent()]
	case celast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil
		}
		t := ke.pathDeclType(sel.Operand(), roots, apples)
		if t == nil || !t.IsObject() {
			return nil
		}
		if f, ok := t.Fields[sel.FieldName()]; ok {
			return f.Type
		}
	case celast.CallKind:
		if e.AsCall().FunctionName() == myApplesFunction {
			return apiservercel.NewListType(ke.apple, int64(apples))
		}
	}
	return nil
}

// issuesDetail gives each CEL error as "message (line:column)", from 1.
func issuesDetail(iss *cel.Issues) string {
	errs := iss.Errors()
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.Location != nil && e.Location.Line() > 0 {
			msgs = append(msgs, fmt.Sprintf("%s (%d:%d)", e.Message, e.Location.Line(), e.Location.Column()+1))
		} else {
			msgs = append(msgs, e.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

// declTypeOf is the DeclType a variable of CEL type t has for the
// expressions after it: schema object types stay themselves, so that
// variables.spec.containrs is refused too.
func (ke *kindEnv) declTypeOf(t *cel.Type) *apiservercel.DeclType {
	if t == nil {
		return apiservercel.DynType
	}
	switch t.Kind() {
	case types.BoolKind:
		return apiservercel.BoolType
	case types.IntKind:
		return apiservercel.IntType
	case types.UintKind:
		return apiservercel.UintType
	case types.DoubleKind:
		return apiservercel.DoubleType
	case types.StringKind:
		return apiservercel.StringType
	case types.BytesKind:
		return apiservercel.BytesType
	case types.DurationKind:
		return apiservercel.DurationType
	case types.TimestampKind:
		return apiservercel.TimestampType
	case types.NullTypeKind:
		return apiservercel.NullType
	case types.ListKind:
		return apiservercel.NewListType(ke.declTypeOf(t.Parameters()[0]), -1)
	case types.MapKind:
		return apiservercel.NewMapType(ke.declTypeOf(t.Parameters()[0]), ke.declTypeOf(t.Parameters()[1]), -1)
	case types.StructKind:
		if dt, ok := ke.types[t.TypeName()]; ok {
			return dt
		}
	}
	return apiservercel.DynType
}

// checkJSONValue refuses what decoded JSON or YAML cannot hold, so that
// params convert to CEL values whatever an expression reads of them.
func checkJSONValue(v any) error {
	switch v := v.(type) {
	case nil, bool, string, int64, float64:
		return nil
	case []any:
		for i, e := range v {
			if err := checkJSONValue(e); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	case map[string]any:
		for k, e := range v {
			if err := checkJSONValue(e); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	}
	return fmt.Errorf("a %T is not a JSON value", v)
}

// paramsVal converts params to CEL values once, when the policy compiles:
// a native list or map would be converted again on every read of every
// element, in every admission.
func paramsVal(v any) ref.Val {
	switch v := v.(type) {
	case []any:
		elems := make([]ref.Val, len(v))
		for i, e := range v {
			elems[i] = paramsVal(e)
		}
		return types.NewRefValList(types.DefaultTypeAdapter, elems)
	case map[string]any:
		m := make(map[ref.Val]ref.Val, len(v))
		for k, e := range v {
			m[types.String(k)] = paramsVal(e)
		}
		return types.NewRefValMap(types.DefaultTypeAdapter, m)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}
