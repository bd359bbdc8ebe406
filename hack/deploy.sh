#!/usr/bin/env bash
# Renders, installs and removes policy-webhook on the cluster of the current
# kubectl context. Driven by hack/make/deploy.mk (make deploy / undeploy /
# render-install); see there and the README for the variables.
#
#   hack/deploy.sh render    print the install with IMG set
#   hack/deploy.sh apply     install or upgrade it, registering the webhook last,
#                            then verify
#   hack/deploy.sh verify    wait until the API server calls the webhook
#   hack/deploy.sh delete    remove it, unregistering the webhook first
#
# Environment:
#   IMG            the image to run (registry/name:tag or registry/name@sha256:...);
#                  required for render and apply
#   KUSTOMIZE_DIR  what to install, relative to the repository (manifests/default;
#                  manifests/overlays/fail-open for a fail-open install)
#   COMPONENTS     kustomize components to add, space-separated, relative to the
#                  repository (e.g. manifests/components/servicemonitor)
#   KUBECTL        the kubectl to use (kubectl)
#   KEEP_CRDS      delete: leave the CRDs, and every AdmissionPolicy and MyApple, in place
#   TIMEOUT        apply, verify: how long to wait for each step, in seconds with an s (300s)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kubectl=${KUBECTL:-kubectl}
kustomize_dir=${KUSTOMIZE_DIR:-manifests/default}
timeout=${TIMEOUT:-300s}
namespace=policy-system
webhook_config=policy-webhook
# The install labels its ValidatingWebhookConfiguration with this, so that
# apply can leave it for last.
registration_selector='app.kubernetes.io/component!=webhook-registration'
crd_selector='app.kubernetes.io/component!=crd'

# Temporary files and directories, removed on exit.
cleanup=()
trap 'rm -rf ${cleanup[@]+"${cleanup[@]}"}' EXIT

die() {
	echo "deploy: $*" >&2
	exit 1
}

# overlay writes a kustomization that adds the image and the components to
# KUSTOMIZE_DIR, in a new directory inside the repository (kustomize only
# follows relative paths to other kustomizations), and prints its path.
overlay() {
	[[ -n ${IMG:-} ]] || die "IMG is not set: make deploy IMG=registry.example.com/policy-webhook:v0.1.0"
	[[ -f $root/$kustomize_dir/kustomization.yaml ]] || die "$kustomize_dir has no kustomization.yaml"

	# registry[:port]/path[:tag][@digest] -> name, tag, digest (a port is
	# before the last slash, a tag after it).
	local name=$IMG tag='' digest=''
	if [[ $name == *@* ]]; then
		digest=${name#*@}
		name=${name%%@*}
	fi
	if [[ ${name##*/} == *:* ]]; then
		tag=${name##*:}
		name=${name%:*}
	fi
	[[ -n $tag || -n $digest ]] || die "IMG=$IMG has neither a tag nor a digest; name the version to run"
	local c
	for c in ${COMPONENTS:-}; do
		[[ -f $root/$c/kustomization.yaml ]] || die "component $c has no kustomization.yaml"
	done

	local dir
	dir=$(mktemp -d "$root/.deploy.XXXXXX")
	chmod 0755 "$dir"
	{
		echo "apiVersion: kustomize.config.k8s.io/v1beta1"
		echo "kind: Kustomization"
		echo "resources:"
		echo "- ../$kustomize_dir"
		if [[ -n ${COMPONENTS:-} ]]; then
			echo "components:"
			for c in $COMPONENTS; do
				echo "- ../$c"
			done
		fi
		echo "images:"
		echo "- name: policy-webhook"
		echo "  newName: \"$name\""
		[[ -z $tag ]] || echo "  newTag: \"$tag\""
		[[ -z $digest ]] || echo "  digest: \"$digest\""
	} >"$dir/kustomization.yaml"
	echo "$dir"
}

render() {
	local dir
	dir=$(overlay)
	cleanup+=("$dir")
	"$kubectl" kustomize "$dir"
}

apply() {
	"$kubectl" get crd certificates.cert-manager.io issuers.cert-manager.io >/dev/null 2>&1 ||
		die "cert-manager is not installed in this cluster (no certificates.cert-manager.io CRD); install it first (see the README)"

	local manifest
	manifest=$(mktemp)
	cleanup+=("$manifest")
	render >"$manifest"

	local apply=("$kubectl" apply --server-side --field-manager=policy-webhook-deploy --force-conflicts -f "$manifest")
	# 1. Everything but the webhook registration: until replicas are up
	#    with a certificate, a registered webhook (failurePolicy Fail)
	#    would refuse every Pod of the cluster.
	"${apply[@]}" --selector="$registration_selector"
	echo "deploy: waiting for the serving certificate"
	"$kubectl" -n "$namespace" wait --for=condition=Ready certificate/policy-webhook-serving --timeout="$timeout"
	echo "deploy: waiting for the webhook to be ready"
	"$kubectl" -n "$namespace" rollout status deployment/policy-webhook --timeout="$timeout"
	# 2. Register it, then wait for cainjector to fill every caBundle.
	"${apply[@]}"
	echo "deploy: waiting for cainjector to inject the CA bundle"
	local deadline=$((SECONDS + ${timeout%s})) webhooks bundles
	while :; do
		webhooks=$("$kubectl" get validatingwebhookconfiguration "$webhook_config" -o jsonpath='{range .webhooks[*]}{.name}{"\n"}{end}' | grep -c .) || true
		bundles=$("$kubectl" get validatingwebhookconfiguration "$webhook_config" -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}' | grep -c .) || true
		[[ $webhooks -gt 0 && $bundles -eq $webhooks ]] && break
		((SECONDS < deadline)) || die "cainjector did not inject the CA bundle into $webhook_config within $timeout; is cert-manager's cainjector running?"
		sleep 2
	done
	verify
	echo "deploy: policy-webhook is installed and registered"
}

# verify waits until the API server calls the webhook: a server-side dry run
# of a policy ConfigMap with a typo must come back refused by the webhook,
# naming the typo. A caBundle just injected takes a moment to reach the API
# server's own copy of the registration; until then it fails the call.
verify() {
	local deadline=$((SECONDS + ${timeout%s})) out
	echo "deploy: waiting for the API server to call the webhook"
	while :; do
		out=$("$kubectl" create --dry-run=server -o name -f - 2>&1 <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: policy-webhook-deploy-probe
  namespace: $namespace
  labels:
    policy.example.com/policy: "true"
data:
  policy.yaml: |
    pods:
      allowedRegistrie: [registry.example.com/]
EOF
		) || true
		if [[ $out == *"denied the request"*"allowedRegistrie"* ]]; then
			echo "deploy: the API server calls the webhook: it refused a policy with a typo"
			return
		fi
		((SECONDS < deadline)) || die "the API server does not call the webhook after $timeout; the last dry run of a policy with a typo gave: $out"
		sleep 1
	done
}

delete() {
	local manifest
	manifest=$(mktemp)
	cleanup+=("$manifest")
	# What is deleted does not depend on the image.
	IMG=${IMG:-policy-webhook:undeploy} render >"$manifest"

	# Unregister first: with the webhook registered and its Pods gone, every
	# Pod write of the cluster would be refused.
	"$kubectl" delete validatingwebhookconfiguration "$webhook_config" --ignore-not-found
	local selector=()
	if [[ -n ${KEEP_CRDS:-} ]]; then
		selector=(--selector="$crd_selector")
	fi
	"$kubectl" delete -f "$manifest" --ignore-not-found --wait=true ${selector[@]+"${selector[@]}"}
}

case ${1:-} in
render) render ;;
apply) apply ;;
verify) verify ;;
delete) delete ;;
*) die "usage: $0 render|apply|verify|delete" ;;
esac
