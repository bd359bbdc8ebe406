package chart

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	grafanaprom "github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"sigs.k8s.io/yaml"

	"github.com/policy-webhook/policy-webhook/cache"
	"github.com/policy-webhook/policy-webhook/controllers"
	"github.com/policy-webhook/policy-webhook/controllers/reports"
)

// The files of the monitoring components.
const (
	rulesFile     = manifestsDir + "/components/prometheus-rules/prometheusrule.yaml"
	dashboardFile = manifestsDir + "/components/grafana-dashboard/policy-webhook.json"
)

// webhookMetrics are the metric names the webhook exports (webhook/metrics.go
// names its five in newMetrics; cache and audit export theirs), as
// Prometheus stores them: a histogram as its _bucket, _sum and _count.
var webhookMetrics = func() []string {
	names := []string{
		"policy_webhook_admissions_total",
		"policy_webhook_request_errors_total",
		"policy_webhook_violations_total",
		"policy_webhook_candidate_evaluations_total",
		cache.MetricPolicies, cache.MetricPolicyErrors, cache.MetricSnapshotBuilds, cache.MetricCacheSynced,
		controllers.MetricStatusUpdates, cache.MetricCachedMyApples, cache.MetricCacheStale, cache.MetricWatchErrors,
		reports.MetricViolations, reports.MetricObjectsJudged, reports.MetricSweeps, reports.MetricReportWrites,
	}
	for _, h := range []string{"policy_webhook_admission_duration_seconds", cache.MetricPropagation, reports.MetricSweepDuration} {
		names = append(names, h+"_bucket", h+"_sum", h+"_count")
	}
	return names
}()

// otherMetrics are the metrics from elsewhere the alerts and the dashboard
// use: Prometheus's own up, the process and Go collectors every replica
// exports, kube-state-metrics and cert-manager.
var otherMetrics = []string{
	"up", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes",
	"kube_deployment_status_replicas_available", "certmanager_certificate_expiration_timestamp_seconds",
}

// promParser parses PromQL as a Prometheus server does by default.
var promParser = parser.NewParser(parser.Options{})

// checkMetricNames fails the test for a metric name in expr that neither
// the webhook nor the other known sources export: a renamed metric would
// otherwise leave an alert that can never fire.
func checkMetricNames(t *testing.T, where string, expr parser.Expr) {
	t.Helper()
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if !slices.Contains(webhookMetrics, vs.Name) && !slices.Contains(otherMetrics, vs.Name) {
				t.Errorf("%s: metric %q is not one the webhook (or a known exporter) exports", where, vs.Name)
			}
		}
		return nil
	})
}

// loadRules reads the PrometheusRule of the component and parses its
// groups the way Prometheus loads a rule file (unknown fields refused,
// every expression parsed, templates checked).
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &pr); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	groups, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	rgs, errs := rulefmt.Parse(groups, false, model.UTF8Validation, promParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return rgs
}

// wantAlerts are the alerts the README documents, each with a runbook line.
var wantAlerts = []string{
	"PolicyWebhookNoReadyReplica",
	"PolicyWebhookAdmissionErrors",
	"PolicyWebhookNotSynced",
	"PolicyWebhookCacheStale",
	"PolicyWebhookSlowAdmissions",
	"PolicyWebhookInvalidPolicySource",
	"PolicyWebhookCertificateExpiring",
	"PolicyWebhookAuditViolationsRising",
}

// TestAlertsParse parses every alert's expression with the PromQL parser,
// checks the metric names it uses, and that the README has a runbook line
// for it.
func TestAlertsParse(t *testing.T) {
	rgs := loadRules(t)
	readme, err := os.ReadFile(filepath.Join(manifestsDir, "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			expr, err := promParser.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
				continue
			}
			checkMetricNames(t, "alert "+r.Alert, expr)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s: want a severity label and a summary", r.Alert)
			}
			if !regexp.MustCompile(`(?m)^\| *` + "`" + r.Alert + "`" + ` *\|.+\|.+\|`).Match(readme) {
				t.Errorf("alert %s has no runbook line in the README's alerts table", r.Alert)
			}
		}
	}
	if !slices.Equal(names, wantAlerts) {
		t.Errorf("alerts %q, want %q", names, wantAlerts)
	}
}

// Synthetic series, in promqltest's load notation, one sample a minute.
// healthy is an install that works: two replicas up and synced, traffic
// allowed and denied fast, no errors, no invalid policy, certificates
// renewed.
const ns = `namespace="policy-system", job="policy-webhook"`

func healthySeries() string {
	var b strings.Builder
	for _, pod := range []string{"a", "b"} {
		p := fmt.Sprintf(`%s, pod="policy-webhook-%s"`, ns, pod)
		fmt.Fprintf(&b, "up{%s} 1x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_cache_synced{%s} 1x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_cache_stale_seconds{%s, informer=\"myapples\"} 0x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_policies{%s, kind=\"ConfigMap\"} 3x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_admissions_total{%s, kind=\"Pod\", operation=\"CREATE\", verdict=\"allowed\"} 0+100x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_admissions_total{%s, kind=\"Pod\", operation=\"CREATE\", verdict=\"denied\"} 0+5x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_admissions_total{%s, kind=\"Pod\", operation=\"CREATE\", verdict=\"error\"} 0x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_violations_total{%s, rule=\"pods.allowedRegistries\", enforcement=\"Deny\"} 0+5x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_request_errors_total{%s, reason=\"malformed\"} 0x180\n", p)
		// A candidate beside the baseline, tried on live traffic.
		fmt.Fprintf(&b, "policy_webhook_candidate_evaluations_total{%s, source=\"AdmissionPolicy baseline\", outcome=\"same\"} 0+95x180\n", p)
		fmt.Fprintf(&b, "policy_webhook_candidate_evaluations_total{%s, source=\"AdmissionPolicy baseline\", outcome=\"would_deny\"} 0+5x180\n", p)
		fmt.Fprintf(&b, "process_cpu_seconds_total{%s} 0+3x180\n", p)
		fmt.Fprintf(&b, "process_resident_memory_bytes{%s} 50000000x180\n", p)
		fmt.Fprintf(&b, "go_memstats_heap_inuse_bytes{%s} 20000000x180\n", p)
		// Every answer under 100µs, every propagation under 1ms.
		b.WriteString(histogramSeries("policy_webhook_admission_duration_seconds", p+`, kind="Pod"`, 25e-6, 14, 100e-6, 105))
		b.WriteString(histogramSeries(cache.MetricPropagation, p, 100e-6, 16, 1e-3, 2))
	}
	// The elected replica's last audit sweep: the same three old violations
	// all along.
	b.WriteString(auditViolations("a", "3x180"))
	b.WriteString(`kube_deployment_status_replicas_available{namespace="policy-system", deployment="policy-webhook"} 2x180` + "\n")
	// Renewed: 60 days left.
	b.WriteString(`certmanager_certificate_expiration_timestamp_seconds{name="policy-webhook-serving", exported_namespace="policy-system"} 5184000x180` + "\n")
	b.WriteString(`certmanager_certificate_expiration_timestamp_seconds{name="policy-webhook-ca", exported_namespace="policy-system"} 25000000x180` + "\n")
	return b.String()
}

// auditViolations is the audit's violations gauge of replica pod, for one
// rule, with the given samples.
func auditViolations(pod, samples string) string {
	return fmt.Sprintf(`%s{%s, pod="policy-webhook-%s", source="ConfigMap/policy-system/baseline", rule="pods.runAsNonRoot", enforcement="Audit"} %s`+"\n",
		reports.MetricViolations, ns, pod, samples)
}

// histogramSeries are the _bucket series of a classic histogram whose
// buckets start at start and double count times (the webhook's
// ExponentialBuckets), receiving perMinute observations a minute, all of
// them at most atMost seconds.
func histogramSeries(name, lbls string, start float64, count int, atMost float64, perMinute int) string {
	var b strings.Builder
	le := start
	for range count {
		if le >= atMost {
			fmt.Fprintf(&b, "%s_bucket{%s, le=%q} 0+%dx180\n", name, lbls, strconv.FormatFloat(le, 'g', -1, 64), perMinute)
		} else {
			fmt.Fprintf(&b, "%s_bucket{%s, le=%q} 0x180\n", name, lbls, strconv.FormatFloat(le, 'g', -1, 64))
		}
		le *= 2
	}
	fmt.Fprintf(&b, "%s_bucket{%s, le=\"+Inf\"} 0+%dx180\n", name, lbls, perMinute)
	return b.String()
}

// without drops the lines of series whose metric name and labels contain
// every one of the strings in match.
func without(series string, match ...string) string {
	var out []string
	for _, line := range strings.Split(series, "\n") {
		drop := line != ""
		for _, m := range match {
			drop = drop && strings.Contains(line, m)
		}
		if !drop {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestAlertsFire evaluates every alert rule, as Prometheus's rule manager
// does (every minute, for three hours, honouring `for`), on the synthetic
// series of a failure and of a healthy install: each alert fires on its
// failures, and none fires on the healthy install.
func TestAlertsFire(t *testing.T) {
	rgs := loadRules(t)
	healthy := healthySeries()
	p := `namespace="policy-system", job="policy-webhook", pod="policy-webhook-a"`
	cases := []struct {
		name, alert, series string
	}{
		{"healthy", "", healthy},
		{"no available replica", "PolicyWebhookNoReadyReplica",
			without(healthy, "kube_deployment_status_replicas_available") +
				"\nkube_deployment_status_replicas_available{namespace=\"policy-system\", deployment=\"policy-webhook\"} 0x180"},
		{"no replica scraped", "PolicyWebhookNoReadyReplica",
			without(without(healthy, "up{"), "kube_deployment") + "\nup{" + p + "} 0x180"},
		{"admissions erroring", "PolicyWebhookAdmissionErrors",
			without(healthy, `verdict="error"`, "policy-webhook-a") +
				"\npolicy_webhook_admissions_total{" + p + `, kind="MyApple", operation="CREATE", verdict="error"} 0+2x180`},
		{"namespaces that cannot be confirmed", "PolicyWebhookAdmissionErrors",
			healthy + "\npolicy_webhook_admissions_total{" + p + `, kind="Pod", operation="CREATE", verdict="unknown_namespace"} 0+2x180`},
		{"requests refused before judging", "PolicyWebhookAdmissionErrors",
			without(healthy, "request_errors", "policy-webhook-a") +
				"\npolicy_webhook_request_errors_total{" + p + `, reason="too_large"} 0+1x180`},
		{"a replica not synced", "PolicyWebhookNotSynced",
			without(healthy, "cache_synced", "policy-webhook-a") + "\npolicy_webhook_cache_synced{" + p + "} 0x180"},
		{"answers while not synced", "PolicyWebhookNotSynced",
			healthy + "\npolicy_webhook_admissions_total{" + p + `, kind="Pod", operation="CREATE", verdict="not_synced"} 0+10x180`},
		{"a replica's watches down for ten minutes", "PolicyWebhookCacheStale",
			without(healthy, "cache_stale", "policy-webhook-a") + "\npolicy_webhook_cache_stale_seconds{" + p + `, informer="myapples"} 0x60 0+60x10 600x110`},
		{"p99 over 100ms", "PolicyWebhookSlowAdmissions",
			without(healthy, "admission_duration") +
				histogramSeries("policy_webhook_admission_duration_seconds", p+`, kind="Pod"`, 25e-6, 14, 0.2, 100)},
		{"an invalid policy source", "PolicyWebhookInvalidPolicySource",
			healthy + "\npolicy_webhook_policy_errors{" + p + `, kind="ConfigMap", exported_namespace="team-a", name="registries"} 1x180`},
		{"a certificate not renewed", "PolicyWebhookCertificateExpiring",
			without(healthy, "policy-webhook-serving") +
				// 10 days from the epoch, where the series start.
				"\ncertmanager_certificate_expiration_timestamp_seconds{name=\"policy-webhook-serving\", exported_namespace=\"policy-system\"} 864000x180"},
		{"audit violations rising", "PolicyWebhookAuditViolationsRising",
			without(healthy, reports.MetricViolations) + auditViolations("a", "3x150 10x30")},
		{"audit violations where there were none", "PolicyWebhookAuditViolationsRising",
			without(healthy, reports.MetricViolations) + auditViolations("a", "_x150 5x30")},
	}
	// Not failures: an invalid policy fixed within 10 minutes, a slow
	// minute, a replica that syncs after a minute, audit violations going
	// down, a new leader reporting the old one's violations.
	quiet := []struct{ name, series string }{
		{"audit violations going down",
			without(healthy, reports.MetricViolations) + auditViolations("a", "10x90 3x90")},
		{"a new leader audits",
			without(healthy, reports.MetricViolations) + auditViolations("a", "3x90 _x90") + auditViolations("b", "_x88 3x92")},
		{"a policy fixed within 10 minutes",
			healthy + "\npolicy_webhook_policy_errors{" + p + `, kind="ConfigMap", exported_namespace="team-a", name="registries"} 1x5 0x174`},
		{"an API server restart of a minute",
			without(healthy, "cache_stale", "policy-webhook-a") + "\npolicy_webhook_cache_stale_seconds{" + p + `, informer="myapples"} 0x90 30 60 0x88`},
		{"a replica that syncs after a minute",
			without(healthy, "cache_synced", "policy-webhook-a") + "\npolicy_webhook_cache_synced{" + p + "} 0 1x179"},
	}
	for _, q := range quiet {
		cases = append(cases, struct{ name, alert, series string }{q.name, "", q.series})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			firing := evalRules(t, rgs, tc.series, 3*time.Hour)
			switch {
			case tc.alert == "" && len(firing) > 0:
				t.Errorf("alerts %q fire on series that should not alert", firing)
			case tc.alert != "" && !slices.Contains(firing, tc.alert):
				t.Errorf("%s does not fire (firing: %q)", tc.alert, firing)
			}
		})
	}
}

// evalRules loads series into a fresh storage and evaluates every alerting
// rule every minute from the start of the series for span, as Prometheus
// does; it returns the alerts firing at the end.
func evalRules(t *testing.T, rgs *rulefmt.RuleGroups, series string, span time.Duration) []string {
	t.Helper()
	st := promqltest.LoadedStorage(t, "load 1m\n"+indent(series))
	engine := promqltest.NewTestEngineWithOpts(t, promql.EngineOpts{
		MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute,
	})
	query := rules.EngineQueryFunc(engine, st)
	var firing []string
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			expr, err := promParser.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("alert %s: %v", r.Alert, err)
			}
			rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
				labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true, slog.New(slog.DiscardHandler))
			for ts := time.Unix(0, 0).UTC(); !ts.After(time.Unix(0, 0).Add(span)); ts = ts.Add(time.Minute) {
				if _, err := rule.Eval(t.Context(), 0, ts, query, nil, 0); err != nil {
					t.Fatalf("evaluating %s at %s: %v", r.Alert, ts, err)
				}
			}
			for _, a := range rule.ActiveAlerts() {
				if a.State == rules.StateFiring {
					firing = append(firing, r.Alert)
					break
				}
			}
		}
	}
	return firing
}

// indent indents every non-empty line of s by two spaces, as a load
// command's series must be.
func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// grafanaDashboard is Grafana's classic dashboard JSON model, the one
// dashboard JSON files, the dashboard sidecar and the import dialog use
// (schemaVersion); the SDK marks it deprecated in favour of the v2 resource,
// which is not what a sidecar ConfigMap holds.
type grafanaDashboard = dashboard.Dashboard //nolint:staticcheck // SA1019: the classic model is the one this file is in, see above

// grafanaVars are what Grafana puts in place of the dashboard's variables
// before it sends a query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", "policy-system")

// TestDashboard decodes the dashboard into the Grafana dashboard model of
// grafana-foundation-sdk, strictly (an unknown or misspelt field, a wrong
// type, a missing required field is an error; panels' options and queries
// are decoded into their plugins' types), then parses every query as PromQL
// and runs it on the series of a busy install: each must return data, so a
// wrong metric or label name shows.
func TestDashboard(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	// The SDK returns its error list as an error even when it is empty.
	if err := d.UnmarshalJSONStrict(data); err != nil && !isEmptyBuildErrors(err) {
		t.Fatalf("%s is not a valid Grafana dashboard: %v", dashboardFile, err)
	}
	// The check can fail: a misspelt field anywhere is refused.
	for _, typo := range [][2]string{
		{`"gridPos"`, `"gridPosition"`},      // a panel's field
		{`"legendFormat"`, `"legendFromat"`}, // a Prometheus query's field
		{`"showLegend"`, `"showLegends"`},    // a timeseries option
		{`"colorMode"`, `"colourMode"`},      // a stat option
		{`"refresh": 2`, `"refresh": "2"`},   // a variable's field of the wrong type
	} {
		var bad grafanaDashboard
		err := bad.UnmarshalJSONStrict([]byte(strings.Replace(string(data), typo[0], typo[1], 1)))
		if err == nil || isEmptyBuildErrors(err) {
			t.Errorf("a dashboard with %s for %s was accepted", typo[1], typo[0])
		}
	}
	if d.Uid == nil || *d.Uid != "policy-webhook" || d.Title == nil || *d.Title == "" {
		t.Errorf("uid %v title %v: want uid policy-webhook and a title", d.Uid, d.Title)
	}

	// The busy install: the healthy series plus an invalid policy source.
	busy := healthySeries() + `policy_webhook_policy_errors{namespace="policy-system", job="policy-webhook", pod="policy-webhook-a", kind="ConfigMap", exported_namespace="team-a", name="registries"} 1x180` + "\n"
	st := promqltest.LoadedStorage(t, "load 1m\n"+indent(busy))
	engine := promqltest.NewTestEngineWithOpts(t, promql.EngineOpts{MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	at := time.Unix(0, 0).Add(time.Hour)

	// UnmarshalJSONStrict has checked every panel, its options and its
	// queries, but keeps none of them: the SDK's strict decoders report
	// success as an empty, non-nil error list, and the callers then drop
	// what they decoded. The lenient decoder keeps them, typed by plugin.
	var typedDash grafanaDashboard
	if err := json.Unmarshal(data, &typedDash); err != nil {
		t.Fatal(err)
	}
	if len(typedDash.Panels) != len(d.Panels) {
		t.Fatalf("%d panels decoded, %d strictly", len(typedDash.Panels), len(d.Panels))
	}
	used := map[string]bool{}
	for i, p := range typedDash.Panels {
		panel := p.Panel
		if panel == nil {
			t.Errorf("panel %d is a row: this dashboard has none", i)
			continue
		}
		title := ""
		if panel.Title != nil {
			title = *panel.Title
		}
		switch panel.Type {
		case "timeseries":
			if _, ok := panel.Options.(*timeseries.Options); !ok {
				t.Errorf("panel %q: options decoded as %T, not the timeseries plugin's", title, panel.Options)
			}
		case "stat":
			if _, ok := panel.Options.(*stat.Options); !ok {
				t.Errorf("panel %q: options decoded as %T, not the stat plugin's", title, panel.Options)
			}
		default:
			t.Errorf("panel %q: type %q, want timeseries or stat", title, panel.Type)
		}
		if panel.GridPos == nil || panel.GridPos.W < 1 || panel.GridPos.H < 1 || panel.GridPos.X+panel.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v off the 24-column grid", title, panel.GridPos)
		}
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", title)
		}
		for i, target := range panel.Targets {
			q, ok := target.(*grafanaprom.Dataquery)
			if !ok {
				t.Errorf("panel %q query %d decoded as %T, not a Prometheus query", title, i, target)
				continue
			}
			expr, err := promParser.ParseExpr(grafanaVars.Replace(q.Expr))
			if err != nil {
				t.Errorf("panel %q query %d: %v\n%s", title, i, err, q.Expr)
				continue
			}
			checkMetricNames(t, fmt.Sprintf("panel %q", title), expr)
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					used[vs.Name] = true
				}
				return nil
			})
			if !strings.Contains(q.Expr, `namespace="$namespace"`) {
				t.Errorf("panel %q query %d ignores the namespace variable: %s", title, i, q.Expr)
			}
			res := runQuery(t, engine, st, grafanaVars.Replace(q.Expr), at)
			if len(res) == 0 {
				t.Errorf("panel %q query %d returns nothing on a busy install: %s", title, i, q.Expr)
			}
		}
	}
	// What the dashboard is for.
	for _, m := range []string{
		"policy_webhook_admissions_total", "policy_webhook_admission_duration_seconds_bucket", "policy_webhook_violations_total",
		cache.MetricPolicies, cache.MetricPolicyErrors, cache.MetricCacheSynced, cache.MetricPropagation + "_bucket",
		"policy_webhook_request_errors_total", "process_cpu_seconds_total", "process_resident_memory_bytes",
		reports.MetricViolations,
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	t.Logf("%d panels, every query parsed and answered", len(d.Panels))
}

// isEmptyBuildErrors reports whether err is an empty cog.BuildErrors, which
// the SDK's strict decoders return when nothing went wrong.
func isEmptyBuildErrors(err error) bool {
	var be cog.BuildErrors
	return errors.As(err, &be) && len(be) == 0
}

// runQuery runs an instant query and returns its result as a vector.
func runQuery(t *testing.T, engine *promql.Engine, st storage.Queryable, qs string, at time.Time) promql.Vector {
	t.Helper()
	q, err := engine.NewInstantQuery(t.Context(), st, nil, qs, at)
	if err != nil {
		t.Fatalf("%s: %v", qs, err)
	}
	defer q.Close()
	res := q.Exec(t.Context())
	if res.Err != nil {
		t.Fatalf("%s: %v", qs, res.Err)
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v
	case promql.Scalar:
		return promql.Vector{{F: v.V}}
	}
	t.Fatalf("%s: result %T, want a vector", qs, res.Value)
	return nil
}
