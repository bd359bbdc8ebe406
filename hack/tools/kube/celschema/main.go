// Command celschema writes the OpenAPI schema of core/v1 Pod, with every $ref
// inlined, as the Kubernetes release this module pins (k8s.io/kubernetes)
// publishes it. policy/cel embeds the file to type-check CEL expressions
// over Pods: `object.spec.containrs` is refused at apply because this schema
// has no such field. Run by `make generate`; CI regenerates and diffs it.
//
//	go run ./celschema OUTPUT
package main

import (
	"encoding/json"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kubernetes/pkg/generated/openapi"
)

// v2SchemaExtension carries the OpenAPI v2 form of a type whose v3 form
// differs (k8s.io/kube-openapi's generator writes it).
const v2SchemaExtension = "x-kubernetes-v2-schema"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: celschema OUTPUT")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "celschema:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("registering core/v1: %w", err)
	}
	r := resolver.NewDefinitionsSchemaResolver(openapi.GetOpenAPIDefinitions, scheme)
	s, err := r.ResolveSchema(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err != nil {
		return fmt.Errorf("resolving the Pod schema: %w", err)
	}
	simplify(s)
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return fmt.Errorf("encoding the Pod schema: %w", err)
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}

// simplify drops the prose, three quarters of the file, which type checking
// never reads, and gives Quantity and IntOrString the schema CEL types them
// by. Their OpenAPI v3 form is a oneOf without a type, which CEL's schema
// typing (k8s.io/apiserver/pkg/cel/common.SchemaDeclType) leaves out, so
// `resources.limits` would not type-check; their v2 form, which the
// definitions carry beside it, is a string, marked int-or-string for
// IntOrString, as CRD structural schemas have them.
func simplify(s *spec.Schema) {
	if s == nil {
		return
	}
	if v2, ok := s.Extensions[v2SchemaExtension].(spec.Schema); ok {
		*s = spec.Schema{}
		if v2.Format == "int-or-string" {
			s.AddExtension("x-kubernetes-int-or-string", true)
		} else {
			s.Type = v2.Type
			s.Format = v2.Format
		}
		return
	}
	s.Description = ""
	for k, p := range s.Properties {
		simplify(&p)
		s.Properties[k] = p
	}
	if s.Items != nil {
		simplify(s.Items.Schema)
		for i := range s.Items.Schemas {
			simplify(&s.Items.Schemas[i])
		}
	}
	if s.AdditionalProperties != nil {
		simplify(s.AdditionalProperties.Schema)
	}
	for _, l := range [][]spec.Schema{s.AllOf, s.AnyOf, s.OneOf} {
		for i := range l {
			simplify(&l[i])
		}
	}
}
