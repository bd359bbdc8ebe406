package cel

import (
	_ "embed"
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/cel/openapi"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/yaml"
)

// podSchemaJSON is the core/v1 Pod schema of the pinned Kubernetes release,
// refs inlined; hack/tools/kube/celschema writes it (make generate).
//
//go:embed schemas/pod.json
var podSchemaJSON []byte

// myAppleCRDYAML is a copy of manifests/crds/stable.example.com_myapples.yaml,
// since go:embed cannot reach outside the package.
//
//go:embed schemas/myapples.yaml
var myAppleCRDYAML []byte

// kindSchema is what a kind's expressions are typed and evaluated by.
type kindSchema struct {
	wrapped  *cachedSchema          // wraps objects for evaluation
	declType *apiservercel.DeclType // types object and oldObject
}

func newKindSchema(kind string, s *spec.Schema) (*kindSchema, error) {
	dt := common.SchemaDeclType(&openapi.Schema{Schema: s}, true)
	if dt == nil {
		return nil, fmt.Errorf("the %s schema gives no CEL type", kind)
	}
	boundMetadata(dt)
	return &kindSchema{wrapped: newCachedSchema(s), declType: dt.MaybeAssignTypeName(kind)}, nil
}

// boundMetadata gives object metadata the sizes API validation holds it to,
// where the schema states none: a validating webhook sees only objects the
// API server has validated, and cost estimates should know it.
func boundMetadata(dt *apiservercel.DeclType) {
	f, ok := dt.Fields["metadata"]
	if !ok || f.Type == nil {
		return
	}
	md := f.Type
	for name, n := range map[string]int64{"name": 253, "generateName": 253, "namespace": 63} {
		if f, ok := md.Fields[name]; ok && f.Type != nil {
			f.Type = withMaxElements(f.Type, n)
		}
	}
	if f, ok := md.Fields["labels"]; ok && f.Type != nil && f.Type.IsMap() {
		labels := *f.Type
		labels.KeyType = withMaxElements(labels.KeyType, 317)
		labels.ElemType = withMaxElements(labels.ElemType, 63)
		f.Type = &labels
	}
}

func withMaxElements(t *apiservercel.DeclType, n int64) *apiservercel.DeclType {
	c := *t
	if c.MaxElements <= 0 || c.MaxElements > n {
		c.MaxElements = n
	}
	return &c
}

// cachedSchema is openapi.Schema with its children wrapped once, up front:
// openapi.Schema wraps them anew on every call, and common.UnstructuredToVal
// asks for them on every field an expression reads.
type cachedSchema struct {
	*openapi.Schema
	props      map[string]common.Schema
	items      common.Schema
	additional common.SchemaOrBool
}

var _ common.Schema = (*cachedSchema)(nil)

func newCachedSchema(s *spec.Schema) *cachedSchema {
	c := &cachedSchema{Schema: &openapi.Schema{Schema: s}}
	if s.Properties != nil {
		c.props = make(map[string]common.Schema, len(s.Properties))
		for name := range s.Properties {
			p := s.Properties[name]
			c.props[name] = newCachedSchema(&p)
		}
	}
	if s.Items != nil && s.Items.Schema != nil {
		c.items = newCachedSchema(s.Items.Schema)
	}
	if s.AdditionalProperties != nil {
		a := &cachedSchemaOrBool{allows: s.AdditionalProperties.Allows}
		if s.AdditionalProperties.Schema != nil {
			a.schema = newCachedSchema(s.AdditionalProperties.Schema)
		}
		c.additional = a
	}
	return c
}

// Properties is shared: callers only read it, as UnstructuredToVal does.
func (c *cachedSchema) Properties() map[string]common.Schema { return c.props }

func (c *cachedSchema) Items() common.Schema { return c.items }

func (c *cachedSchema) AdditionalProperties() common.SchemaOrBool { return c.additional }

type cachedSchemaOrBool struct {
	schema common.Schema
	allows bool
}

func (c *cachedSchemaOrBool) Schema() common.Schema { return c.schema }
func (c *cachedSchemaOrBool) Allows() bool          { return c.allows }

func podSchema() (*spec.Schema, error) {
	var s spec.Schema
	if err := json.Unmarshal(podSchemaJSON, &s); err != nil {
		return nil, fmt.Errorf("decoding the embedded Pod schema: %w", err)
	}
	return &s, nil
}

// myAppleSchema is the MyApple CRD's schema with the Pod's ObjectMeta in
// place of the CRD's bare `metadata: {type: object}`, as the API server
// gives every custom resource that metadata.
func myAppleSchema(pod *spec.Schema) (*spec.Schema, error) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(myAppleCRDYAML, &crd); err != nil {
		return nil, fmt.Errorf("decoding the embedded MyApple CRD: %w", err)
	}
	var props *apiextensionsv1.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Storage && v.Schema != nil {
			props = v.Schema.OpenAPIV3Schema
		}
	}
	if props == nil {
		return nil, fmt.Errorf("the embedded MyApple CRD has no schema for its storage version")
	}
	// JSONSchemaProps and spec.Schema share their JSON form.
	b, err := json.Marshal(props)
	if err != nil {
		return nil, fmt.Errorf("encoding the MyApple schema: %w", err)
	}
	var s spec.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding the MyApple schema: %w", err)
	}
	if s.Properties == nil {
		return nil, fmt.Errorf("the MyApple schema has no properties")
	}
	s.Properties["metadata"] = pod.Properties["metadata"]
	return &s, nil
}

func objectType(name string, fields ...*apiservercel.DeclField) *apiservercel.DeclType {
	m := make(map[string]*apiservercel.DeclField, len(fields))
	for _, f := range fields {
		m[f.Name] = f
	}
	return apiservercel.NewObjectType(name, m)
}

func declField(name string, t *apiservercel.DeclType) *apiservercel.DeclField {
	return apiservercel.NewDeclField(name, t, false, nil, nil)
}

// requestType is VAP's `request` with only the fields this webhook fills,
// so that reading another is a compile error rather than a runtime one.
func requestType() *apiservercel.DeclType {
	str := apiservercel.StringType
	gvk := objectType("kubernetes.GroupVersionKind",
		declField("group", str), declField("version", str), declField("kind", str))
	gvr := objectType("kubernetes.GroupVersionResource",
		declField("group", str), declField("version", str), declField("resource", str))
	userInfo := objectType("kubernetes.UserInfo",
		declField("username", str),
		declField("uid", str),
		declField("groups", apiservercel.NewListType(str, -1)),
		declField("extra", apiservercel.NewMapType(str, apiservercel.NewListType(str, -1), -1)))
	return objectType("kubernetes.AdmissionRequest",
		declField("kind", gvk),
		declField("resource", gvr),
		declField("subResource", str),
		declField("name", str),
		declField("namespace", str),
		declField("operation", str),
		declField("userInfo", userInfo),
		declField("dryRun", apiservercel.BoolType))
}

// namespaceType is VAP's `namespaceObject` narrowed to what the informer
// cache keeps of a namespace: its name, labels and annotations.
func namespaceType() *apiservercel.DeclType {
	str := apiservercel.StringType
	strMap := apiservercel.NewMapType(str, str, -1)
	md := objectType("kubernetes.NamespaceMetadata",
		declField("name", str), declField("labels", strMap), declField("annotations", strMap))
	return objectType("kubernetes.Namespace", declField("metadata", md))
}

const appleTypeName = "policywebhook.MyApple"

// appleType is an element of cluster.myApples(namespace).
func appleType() *apiservercel.DeclType {
	str := apiservercel.StringType
	return objectType(appleTypeName,
		declField("name", str), declField("color", str), declField("size", str),
		declField("quantity", apiservercel.IntType))
}

const appleTallyTypeName = "policywebhook.MyAppleTally"

// appleStatsType is what cluster.myAppleStats(namespace) gives: the count
// and quantity sum of the namespace's MyApples, in all and by color and
// size.
func appleStatsType() *apiservercel.DeclType {
	integer := apiservercel.IntType
	tally := objectType(appleTallyTypeName, declField("count", integer), declField("quantity", integer))
	// A namespace has at most as many colors (sizes) as MyApples.
	groups := apiservercel.NewMapType(apiservercel.StringType, tally, maxApplesEstimate)
	return objectType("policywebhook.MyAppleStats",
		declField("count", integer), declField("quantity", integer),
		declField("byColor", groups), declField("bySize", groups))
}
