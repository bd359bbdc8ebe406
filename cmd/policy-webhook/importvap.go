package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/policy-webhook/policy-webhook/check"
	"github.com/policy-webhook/policy-webhook/policy/vapimport"
)

// Exit codes of import-vap.
const (
	exitImported   = 0 // every binding converted whole
	exitNotCarried = 2 // usage error, unreadable input, or something not carried
)

func runImportVAP(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import-vap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configMapNamespace := fs.String("configmap", "", "write policy ConfigMaps of this namespace instead of AdmissionPolicies "+
		"(a ConfigMap policy judges its own namespace; one in the webhook's namespace judges every namespace)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: policy-webhook import-vap [--configmap NAMESPACE] FILE ...\n\n"+
			"Reads ValidatingAdmissionPolicies, their bindings and the objects their paramRefs name\n"+
			"from FILEs (\"-\" is stdin; a directory is read recursively) and writes the equivalent\n"+
			"AdmissionPolicies, one per binding, as YAML. What cannot be carried (resources other than\n"+
			"Pods and MyApples, auditAnnotations, a paramRef selecting several objects, ...) is named\n"+
			"on stderr. Exit status: 0 everything carried, 2 something not carried, or a usage error or\n"+
			"unreadable input.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitImported
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "policy-webhook import-vap: at least one FILE is required (\"-\" for stdin)\n\n")
		fs.Usage()
		return exitUsage
	}
	read, err := check.ReadPaths(fs.Args(), stdin)
	if err != nil {
		return importFailf(stderr, "%v", err)
	}
	docs := make([]vapimport.Document, len(read))
	for i, d := range read {
		docs[i] = vapimport.Document{Where: d.Where, Raw: d.Raw}
	}
	res, err := vapimport.Convert(docs)
	if err != nil {
		return importFailf(stderr, "%v", err)
	}
	for i := range res.Policies {
		p := &res.Policies[i]
		var out []byte
		if *configMapNamespace != "" {
			out, err = p.ConfigMap(*configMapNamespace)
		} else {
			out, err = p.AdmissionPolicy()
		}
		if err != nil {
			return importFailf(stderr, "%v", err)
		}
		if _, err := fmt.Fprintf(stdout, "---\n%s", out); err != nil {
			return importFailf(stderr, "writing the policies: %v", err)
		}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	for _, n := range res.NotCarried {
		fmt.Fprintf(stderr, "not carried: %s\n", n)
	}
	if len(res.NotCarried) > 0 {
		fmt.Fprintf(stderr, "policy-webhook import-vap: %d things not carried: the policies written do not judge as the originals\n", len(res.NotCarried))
		return exitNotCarried
	}
	if len(res.Policies) == 0 {
		fmt.Fprintf(stderr, "policy-webhook import-vap: no ValidatingAdmissionPolicy with a binding in %v\n", fs.Args())
		return exitNotCarried
	}
	return exitImported
}

func importFailf(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "policy-webhook import-vap: "+format+"\n", args...)
	return exitNotCarried
}
