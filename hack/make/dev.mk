# Local development: a control plane with the webhook registered (hack/devcluster).

DEVCLUSTER := $(BIN)/devcluster

# devcluster is built and exec'd rather than `go run`: `go run` does not
# pass SIGTERM on to the program, which would be left running with its
# kube-apiserver and etcd when make is stopped. exec makes it make's child,
# and make forwards SIGTERM to its children.
.PHONY: run
run: tools ## Local control plane + webhook; kubeconfig in .dev/kubeconfig, prints "ready", Ctrl-C stops.
	@$(GO) build -o $(DEVCLUSTER) ./hack/devcluster
	@exec $(DEVCLUSTER) --kubeconfig-out .dev/kubeconfig

.PHONY: demo
demo: tools ## Start the local cluster, apply manifests/samples, show what was admitted and refused.
	@$(GO) build -o $(DEVCLUSTER) ./hack/devcluster
	@$(GO) run ./hack/demo --devcluster $(DEVCLUSTER) --kubectl $(KUBECTL) --samples manifests/samples
