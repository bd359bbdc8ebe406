package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
	"github.com/policy-webhook/policy-webhook/hack/workload"
	"github.com/policy-webhook/policy-webhook/policy"
	"github.com/policy-webhook/policy-webhook/webhook"
)

// Issue 22's allowed-registries rule, as policy-webhook's CEL (the rule as
// the issue writes it, params inline) and as an in-tree
// ValidatingAdmissionPolicy (test/vap/corpus/18-allowed-registries.yaml:
// params from a ConfigMap, comma-separated). registryPolicy is the same
// rule built in.
const (
	registriesCELPolicy = workload.RegistriesCELPolicy
	registriesVAP       = "loadgen-registries"
	// What each enforcement's denial of the denied Pod says.
	celDenial     = "validations.registries: denied: images not from an allowed registry: " + deniedImage
	builtinDenial = "pods.allowedRegistries"
	vapDenial     = "ValidatingAdmissionPolicy '" + registriesVAP + "' with binding '" + registriesVAP + "' denied request: denied: images not from an allowed registry: " + deniedImage
)

// registries is how the registries rule is enforced in one contender of
// registriesRuns.
type registries struct {
	name    string
	webhook bool   // policy-webhook registered, the VAP unbound
	policy  string // the registry policy ConfigMap's policy, with webhook
	vap     bool   // the VAP bound, no webhook
	denial  string // in the denied Pod's refusal; "" admitted
}

// registriesRuns measures dry-run Pod creates (admitted Pods) through the
// API server with issue 22's allowed-registries rule enforced four ways,
// in alternated windows of one run: not at all (no webhook, no VAP), by
// an in-tree ValidatingAdmissionPolicy (binding, params from a ConfigMap),
// by policy-webhook's built-in allowedRegistries, and by policy-webhook
// with the rule as CEL. policy-webhook holds no other policy meanwhile.
func registriesRuns(ctx context.Context, f benchFlags, rep *report, c clients, ours *server, caPEM []byte, logf func(string, ...any)) (err error) {
	if err := c.registriesVAP(ctx); err != nil {
		return err
	}
	defer func() {
		// The webhook's registry policy as the other stages know it.
		ctx := context.WithoutCancel(ctx)
		err = errors.Join(err, c.unbindRegistriesVAP(ctx), c.setRegistryPolicy(ctx, registryPolicy))
	}()
	ways := []registries{
		{name: "none"},
		{name: "vap", vap: true, denial: vapDenial},
		{name: "builtin", webhook: true, policy: registryPolicy, denial: builtinDenial},
		{name: "cel", webhook: true, policy: registriesCELPolicy, denial: celDenial},
	}
	spec := f.window()
	spec.concurrency = f.apiConcurrency
	var cs []contender
	for _, w := range ways {
		con := contender{name: w.name, prepare: func(ctx context.Context) error { return c.enforceRegistries(ctx, w, ours, caPEM) }}
		if w.webhook {
			con.server = ours
		}
		for range spec.concurrency {
			con.attempts = append(con.attempts, c.dryRunCreate(workload.DeploymentPod(false, f.containers), false))
		}
		cs = append(cs, con)
	}
	res, costs, err := compare(ctx, spec, f.apiRounds, cs)
	if err != nil {
		return err
	}
	for i, con := range cs {
		logf("registries c=%d rule=%s: %.0f req/s p99 %s errors %d wrong %d", spec.concurrency, con.name, res[i].PerSecond, res[i].P99, res[i].Errors, res[i].WrongVerdict)
		rep.Registries = append(rep.Registries, apiRow{Webhook: con.name, Concurrency: spec.concurrency, serverRun: serverRun{Load: res[i], Cost: costs[i]}})
	}
	return nil
}

// registriesVAP creates the ValidatingAdmissionPolicy and its params, not
// bound.
func (c clients) registriesVAP(ctx context.Context) error {
	params := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: registriesVAP, Namespace: webhook.DefaultPolicyNamespace},
		Data:       map[string]string{"allowed": "registry.example.com/,ghcr.io/acme/"},
	}
	if err := ignoreExists(c.kube.CoreV1().ConfigMaps(params.Namespace).Create(ctx, params, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("creating the VAP's params: %w", err)
	}
	fail := admissionregistrationv1.Fail
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: registriesVAP},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			ParamKind:     &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Variables: []admissionregistrationv1.Variable{
				{Name: "allowed", Expression: "params.data.allowed.split(',')"},
				{Name: "images", Expression: "object.spec.containers.map(c, c.image) + (has(object.spec.initContainers) ? object.spec.initContainers.map(c, c.image) : [])"},
				{Name: "bad", Expression: "variables.images.filter(i, !variables.allowed.exists(p, i.startsWith(p)))"},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression:        "size(variables.bad) == 0",
				MessageExpression: "'denied: images not from an allowed registry: ' + variables.bad.join(', ')",
			}},
		},
	}
	if err := ignoreExists(c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, vap, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("creating the ValidatingAdmissionPolicy: %w", err)
	}
	return nil
}

func (c clients) bindRegistriesVAP(ctx context.Context) error {
	deny := admissionregistrationv1.DenyAction
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: registriesVAP},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        registriesVAP,
			ParamRef:          &admissionregistrationv1.ParamRef{Name: registriesVAP, Namespace: webhook.DefaultPolicyNamespace, ParameterNotFoundAction: &deny},
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	if err := ignoreExists(c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("binding the ValidatingAdmissionPolicy: %w", err)
	}
	return nil
}

func (c clients) unbindRegistriesVAP(ctx context.Context) error {
	err := c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, registriesVAP, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("unbinding the ValidatingAdmissionPolicy: %w", err)
	}
	return nil
}

// setRegistryPolicy gives the registry policy ConfigMap policy spec.
func (c clients) setRegistryPolicy(ctx context.Context, spec string) error {
	cms := c.kube.CoreV1().ConfigMaps(webhook.DefaultPolicyNamespace)
	cm, err := cms.Get(ctx, registryPolicyCM, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the registry policy: %w", err)
	}
	if cm.Data[policy.ConfigMapDataKey] == spec {
		return nil
	}
	cm.Data = devenv.PolicyConfigMap(webhook.DefaultPolicyNamespace, registryPolicyCM, spec).Data
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating the registry policy: %w", err)
	}
	return nil
}

// enforceRegistries puts w in force and waits until a dry-run create of
// the denied Pod shows it, and no other enforcement: the API server runs
// ValidatingAdmissionPolicies before webhooks, so the VAP's denial would
// hide a webhook still called; the webhook is seen gone first.
func (c clients) enforceRegistries(ctx context.Context, w registries, ours *server, caPEM []byte) error {
	if w.webhook {
		if err := errors.Join(c.unbindRegistriesVAP(ctx), c.setRegistryPolicy(ctx, w.policy),
			devenv.Register(ctx, c.kube, devenv.WebhookConfiguration(ours.url, caPEM, webhook.DefaultPolicyNamespace))); err != nil {
			return err
		}
		return c.waitRegistries(ctx, w)
	}
	if err := errors.Join(devenv.Unregister(ctx, c.kube, devenv.ConfigurationName), c.unbindRegistriesVAP(ctx)); err != nil {
		return err
	}
	if err := c.waitRegistries(ctx, registries{name: "none"}); err != nil || !w.vap {
		return err
	}
	if err := c.bindRegistriesVAP(ctx); err != nil {
		return err
	}
	return c.waitRegistries(ctx, w)
}

// waitRegistries waits until the denied Pod is judged as w judges it.
func (c clients) waitRegistries(ctx context.Context, w registries) error {
	pod := workload.DeploymentPod(true, 2)
	var last string
	err := devenv.PollEvery(ctx, 50*time.Millisecond, 30*time.Second, func(ctx context.Context) error {
		_, err := c.kube.CoreV1().Pods(loadNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		last = "admitted"
		if err != nil {
			last = err.Error()
		}
		switch {
		case w.denial == "" && err == nil:
			return nil
		case w.denial != "" && err != nil && strings.Contains(last, w.denial) &&
			// Neither the other enforcement still in force.
			strings.Contains(last, "ValidatingAdmissionPolicy") == w.vap:
			return nil
		}
		return errors.New(last)
	})
	if err != nil {
		return fmt.Errorf("waiting for the registries rule as %s (the denied Pod: %s): %w", w.name, last, err)
	}
	return nil
}

// registriesName names a row of registriesRuns in the table.
func registriesName(way string) string {
	switch way {
	case "none":
		return "no policy, no webhook"
	case "vap":
		return "in-tree ValidatingAdmissionPolicy"
	case "builtin":
		return "policy-webhook, built-in allowedRegistries"
	case "cel":
		return "policy-webhook, CEL"
	}
	return way
}
