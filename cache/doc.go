// Package cache keeps the policy-webhook's view of the cluster in memory, so
// that judging an admission makes no API call.
//
// Client-go dynamic informers watch the policy carriers (ConfigMaps labelled
// policy.example.com/policy=true, selected on the API server so unrelated
// ConfigMaps never reach the process, and AdmissionPolicies) and the cluster
// state rules read (MyApples, Namespaces as metadata only). Each informer has a
// transform that drops what no reader looks at before the object is stored; a
// MyApple is kept as its namespace, name and quantity alone.
//
// Each informer's ListerWatcher (watch.go) retries, itself and at most 2 s
// apart, the lists and watches an API server cannot answer yet, where
// client-go's reflector would back off for up to a minute; it counts and
// logs every failure, and knows since when the informer has had no watch
// open, which Cache.CheckCurrent turns into the webhook's cache-current
// readiness check.
//
// Policies follow the shape of the in-tree ValidatingAdmissionPolicy plugin:
// a changed source is parsed and compiled once, when it changes, and a new
// immutable Snapshot (a policy.Set over every compiled source) is built and
// swapped in through an atomic pointer, so a request never takes a lock to
// find its policies. A source whose new version does not compile keeps its
// last good version in force; the error goes to the log, a metric, a Warning
// Event on the object and, for an AdmissionPolicy, its Ready condition. The
// leader persists that last good version (ConfigMap LastGoodConfigMap) so
// that a replica starting later enforces it too; with no good version known
// at all, a stand-in refuses what the invalid policy matches (lastgood.go).
//
// The Cache's lifecycle follows kubernetes sample-controller: Start starts
// the informers, waits for them (and for every event handler) to sync,
// builds the first snapshot, then serves until its context is done and
// stops everything it started before returning. Start satisfies
// controller-runtime's manager.Runnable and runs on every replica, leader or
// not, since every replica answers admissions.
//
// Readers on every replica, one writer. Each replica applies only its own
// entry of an AdmissionPolicy's status.replicas (the generation its
// snapshot enforces, and since when) and renews a heartbeat Lease. What
// is written once for all, the Warning Events and the Ready condition,
// observedGeneration and inForce summary, is the Reporter's, a
// leader-election runnable the manager runs on the elected replica only.
package cache
