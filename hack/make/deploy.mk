# Image and install targets. The install is manifests/default
# (kustomize); hack/deploy.sh adds the image to it in a throwaway overlay.
#
#   make docker-build IMG=registry.example.com/policy-webhook:v0.1.0
#   make docker-push  IMG=registry.example.com/policy-webhook:v0.1.0
#   make deploy       IMG=registry.example.com/policy-webhook:v0.1.0
#   make undeploy

# The image to build, push and run: registry/name:tag or registry/name@sha256:...
IMG ?=
# docker, or podman (same flags).
CONTAINER_TOOL ?= docker
# Platforms of `make docker-buildx` (the Dockerfile cross-compiles).
PLATFORMS ?= linux/amd64,linux/arm64
# What deploy installs, relative to the repository: manifests/default, or
# manifests/overlays/fail-open. COMPONENTS adds kustomize components, e.g.
# COMPONENTS=manifests/components/servicemonitor.
KUSTOMIZE_DIR ?= manifests/default
COMPONENTS ?=
# make undeploy KEEP_CRDS=1 leaves the CRDs (and every AdmissionPolicy and MyApple).
KEEP_CRDS ?=
# The cluster's kubectl: the one on PATH, else the one `make tools` builds.
DEPLOY_KUBECTL ?= $(or $(shell command -v kubectl 2>/dev/null),$(KUBECTL))

DEPLOY_ENV = IMG='$(IMG)' KUSTOMIZE_DIR='$(KUSTOMIZE_DIR)' COMPONENTS='$(COMPONENTS)' KUBECTL='$(DEPLOY_KUBECTL)'

.PHONY: require-img
require-img:
	@[ -n '$(IMG)' ] || { echo 'IMG is required, e.g. make $(MAKECMDGOALS) IMG=registry.example.com/policy-webhook:v0.1.0' >&2; exit 1; }

.PHONY: docker-build
docker-build: require-img ## Build the container image IMG (version stamped from git).
	$(CONTAINER_TOOL) build --build-arg VERSION='$(VERSION)' -t '$(IMG)' .

.PHONY: docker-buildx
docker-buildx: require-img ## Build and push IMG for PLATFORMS with docker buildx.
	docker buildx build --platform='$(PLATFORMS)' --build-arg VERSION='$(VERSION)' -t '$(IMG)' --push .

.PHONY: docker-push
docker-push: require-img ## Push the container image IMG.
	$(CONTAINER_TOOL) push '$(IMG)'

.PHONY: render-install
render-install: require-img ## Print the install (manifests/default with IMG) to stdout.
	@$(DEPLOY_ENV) hack/deploy.sh render

.PHONY: deploy
deploy: require-img ## Install or upgrade on the current kubectl context (needs cert-manager), IMG=...
	$(DEPLOY_ENV) hack/deploy.sh apply

.PHONY: undeploy
undeploy: ## Remove the install (KEEP_CRDS=1 keeps the CRDs and their objects).
	$(DEPLOY_ENV) KEEP_CRDS='$(KEEP_CRDS)' hack/deploy.sh delete
