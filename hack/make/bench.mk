# Benchmarks and the load harness (hack/loadgen): in-process Go
# benchmarks, then policy-webhook and the stdlib no-op webhook as child
# processes on a local control plane, directly and through the API server,
# then policy propagation and memory. Prints one table; JSON in BENCH_OUT.

BENCH_OUT ?= .dev/bench.json
BENCH_FLAGS ?=

.PHONY: bench
bench: tools build ## Go benchmarks + load harness against the no-op floor; table on stdout, JSON in $(BENCH_OUT).
	@$(GO) build -trimpath -o $(BIN)/loadgen ./hack/loadgen
	@$(GO) build -trimpath -o $(BIN)/loadgen-noop ./hack/loadgen/noop
	@exec $(BIN)/loadgen --webhook-bin $(BIN)/policy-webhook --noop-bin $(BIN)/loadgen-noop --go $(GO) --out $(BENCH_OUT) $(BENCH_FLAGS)
