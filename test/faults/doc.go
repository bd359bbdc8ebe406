// Package faults is the fault-injection suite: the webhook on a local
// control plane (test/testenv) put through what breaks replicas in
// production, with admissions flowing through each fault and every verdict
// checked, and the figures of each run (admissions during the fault,
// failed, wrong, time to converge, heap before and after) logged with
// t.Logf (go test -v ./test/faults/):
//
//   - TestAPIServerRestart: kube-apiserver killed for 30 s and started again
//     on the same etcd; the webhook answers from its cache and stays ready,
//     and every informer is current within 5 s of the restart.
//   - TestLeaseLostUnderOutage: the same outage with leader election on:
//     the Lease is lost, no admission fails, the process keeps running, and
//     the replica leads and writes again within 10 s of the API server's return.
//   - TestUnseenNamespaceAfterRestart: right after an API server restart,
//     100 namespaces labelled env=prod each created with a Pod at once: none
//     let past a namespaceSelector policy.
//   - TestWatchExpiry: the informers' watches held while etcd is compacted
//     past their resourceVersion, so they get 410 Gone and relist; the
//     enforced state then equals the stored one.
//   - TestPolicyStorm: 1,000 edits of one policy and 200 policy ConfigMaps
//     created and deleted; the enforced state equals the stored one, rule by
//     rule, and the heap comes back.
//   - TestSIGTERM: the policy-webhook binary sent SIGTERM under about 500
//     admissions a second: readiness false first, no accepted request fails.
//   - TestUnboundedInputs: 16 deeply nested policy documents in parallel and
//     denials against a 1 MB allowlist for 300 containers: the heap stays
//     under the Deployment's limit and every response is bounded.
//
// The quota burst (20 MyApples of 10 created at once against a limit of 60,
// ten rounds, through the API server) is TestQuotaBurst in test/e2e (one
// replica) and TestQuotaAcrossReplicas in package quota (two replicas behind
// one address): exactly 6 admitted every round.
//
// The slow-body and held-body attacks run against the webhook server itself,
// where the server's byte budget can be watched: TestFaultSlowAndHeldBodies
// in package webhook.
//
// The webhook runs in this process (test/inprocess), or as the built binary
// for SIGTERM; all traffic is on loopback.
package faults
