# The Helm chart (manifests/chart/policy-webhook). Its tests are their own Go
# module, test/chart, so that the product's go.mod stays free of Helm; `make
# test` and `make vet` run them.

.PHONY: chart-crds
chart-crds: ## Copy the CRDs of manifests/default (into crds/) and of components/policyreports (into files/) into the Helm chart.
	cd test/chart && UPDATE_CHART_CRDS=1 $(GO) test -count=1 -run '^TestChartCRDsAreTheInstalls$$' .

.PHONY: test-chart
test-chart: tools ## Only the chart's tests (lint, render, values, install on the local control plane, alerts, dashboard).
	cd test/chart && $(GO) vet ./...
	cd test/chart && $(GO) test -count=1 ./...
