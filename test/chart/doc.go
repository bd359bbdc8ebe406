// Package chart holds the tests of the Helm chart in
// manifests/chart/policy-webhook and of the monitoring that ships with it
// (the Grafana dashboard and the Prometheus alerts), run with the Helm Go
// SDK:
//
//   - the chart lints, and with default values renders the objects of
//     manifests/default (kustomize) one by one, Helm's labels aside;
//   - every value takes effect, and the schema refuses a misspelt or
//     ill-typed one;
//   - installed, upgraded and uninstalled on a local control plane
//     (kube-apiserver and etcd through envtest) with cert-manager's CRDs and
//     its real cainjector, the API server calls the webhook through the
//     chart's Service and registration;
//   - every alert and every dashboard query parses as PromQL, every alert
//     fires on the series of its failure and not on a healthy install, and
//     the dashboard decodes strictly into Grafana's dashboard model.
//
// It is its own Go module, so that the product's go.mod stays free of Helm,
// Prometheus and Grafana; `make test` runs it.
package chart
