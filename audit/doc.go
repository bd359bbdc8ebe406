// Package audit judges the objects that already exist: every Pod and
// MyApple, read from the API server in pages, against the policies in
// force, with the same engine and the same CREATE semantics as an
// admission (an existing object has nothing to be forgiven against).
//
// Lister pages through the objects; Sweep judges them. Auditor is the
// background audit of `policy-webhook serve`: run by the elected replica
// only, it sweeps at an interval and right after a policy change, and
// writes what it finds as PolicyReports (wgpolicyk8s.io/v1alpha2), as the
// status of each AdmissionPolicy, and as metrics. `policy-webhook check
// --cluster` sweeps with the policy files it is given instead.
package audit
