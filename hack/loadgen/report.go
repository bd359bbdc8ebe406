package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type serverRun struct {
	Load loadResult `json:"load"`
	Cost serverCost `json:"cost"`
}

type directRow struct {
	Verdict     string    `json:"verdict"`
	Concurrency int       `json:"concurrency"`
	Noop        serverRun `json:"noop"`
	Ours        serverRun `json:"policyWebhook"`
}

type apiRow struct {
	Webhook     string `json:"webhook"`
	Concurrency int    `json:"concurrency"`
	serverRun
}

type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
}

// report is everything one `make bench` measured.
type report struct {
	Date         time.Time         `json:"date"`
	Machine      machine           `json:"machine"`
	Command      string            `json:"command"`
	Settings     map[string]string `json:"settings"`
	ReviewBytes  int               `json:"reviewBytes"`
	GoBenchmarks []goBenchmark     `json:"goBenchmarks"`
	IdleRSS      map[string]int64  `json:"idleRssBytes"`
	Direct       []directRow       `json:"direct"`
	APIServer    []apiRow          `json:"apiserver"`
	// Registries is issue 22's allowed-registries rule through the API
	// server, by enforcement (Webhook: none, vap, builtin, cel).
	Registries  []apiRow          `json:"registries"`
	Propagation propagationResult `json:"propagation"`
	// PropagationCEL is the same with a policy of CEL validations.
	PropagationCEL propagationResult `json:"propagationCEL"`
	Quota          quotaResult       `json:"quota"`
	AuditLoad      auditLoadResult   `json:"auditLoad"`
	Memory         []memoryStage     `json:"memory"`
	Rollout        []rolloutRow      `json:"rollout"`
}

func newReport(f benchFlags) *report {
	return &report{
		Date:    time.Now().UTC(),
		Machine: machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version()},
		Command: strings.Join(os.Args, " "),
		Settings: map[string]string{
			"warmup": f.warmup.String(), "duration": f.duration.String(), "rounds": strconv.Itoa(f.rounds), "apiserverRounds": strconv.Itoa(f.apiRounds), "containers": strconv.Itoa(f.containers), "benchtime": f.benchtime,
		},
		IdleRSS: map[string]int64{},
	}
}

func cpuModel() string {
	fh, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
func mib(b float64) string      { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// print writes the one table: a section per measurement, each figure of
// policy-webhook beside the no-op's and their ratio.
func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "policy-webhook bench  %s  %d CPUs (%s)  %s  review %d B (%s containers)  %s+%s per contender in %s alternated rounds\n\n",
		r.Date.Format(time.RFC3339), r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.ReviewBytes, r.Settings["containers"],
		r.Settings["warmup"], r.Settings["duration"], r.Settings["rounds"])
	if len(r.GoBenchmarks) > 0 {
		fmt.Fprintln(tw, "in process\tns/op\tB/op\tallocs/op\t")
		var withoutCEL, withCEL, pod, deployment, alone, candidate, noExceptions, exceptions float64
		for _, b := range r.GoBenchmarks {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t\n", b.Name, b.NsPerOp, b.BytesPerOp, b.AllocsPerOp)
			switch {
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodCEL/builtin=10,cel=0"):
				withoutCEL = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodCEL/builtin=10,cel=5"):
				withCEL = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodCandidate/policy+candidate"):
				candidate = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodCandidate/policy"):
				alone = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodController/Pod"):
				pod = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodController/Deployment"):
				deployment = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodExceptions/lifting=false/exceptions=0"):
				noExceptions = b.NsPerOp
			case strings.HasPrefix(b.Name, "BenchmarkHandlePodExceptions/lifting=false/exceptions=10"):
				exceptions = b.NsPerOp
			}
		}
		if withoutCEL > 0 && withCEL > 0 {
			fmt.Fprintf(tw, "handler with 5 CEL validations ×without\t%s\t\t\t\n", ratio(withCEL, withoutCEL))
		}
		if alone > 0 && candidate > 0 {
			fmt.Fprintf(tw, "policy with a candidate ×alone\t%s\t\t\t\n", ratio(candidate, alone))
		}
		if pod > 0 && deployment > 0 {
			fmt.Fprintf(tw, "Deployment ×Pod of the same template\t%s\t\t\t\n", ratio(deployment, pod))
		}
		if noExceptions > 0 && exceptions > 0 {
			fmt.Fprintf(tw, "handler with 10 PolicyExceptions in force ×without\t%s\t\t\t\n", ratio(exceptions, noExceptions))
		}
		fmt.Fprintln(tw)
	}
	if len(r.Direct) > 0 {
		fmt.Fprintln(tw, "direct HTTPS\treq/s median (noop)\t×noop\t×noop total\tp50\tp90\tp99 (noop)\t×noop\tmax\tCPU/req (noop)\t×noop\tRSS (noop)\terrors\twrong\tAPI reqs\t")
		for _, d := range r.Direct {
			o, n := d.Ours, d.Noop
			fmt.Fprintf(tw, "%s c=%d\t%.0f (%.0f)\t%s\t%s\t%s\t%s\t%s (%s)\t%s\t%s\t%s (%s)\t%s\t%s (%s)\t%d/%d\t%d/%d\t%.0f\t\n",
				d.Verdict, d.Concurrency,
				o.Load.PerSecond, n.Load.PerSecond, ratio(o.Load.PerSecond, n.Load.PerSecond), ratio(o.Load.TotalPerSecond, n.Load.TotalPerSecond),
				ms(o.Load.P50), ms(o.Load.P90), ms(o.Load.P99), ms(n.Load.P99), ratio(float64(o.Load.P99), float64(n.Load.P99)), ms(o.Load.Max),
				us(o.Cost.CPUPerRequest), us(n.Cost.CPUPerRequest), ratio(float64(o.Cost.CPUPerRequest), float64(n.Cost.CPUPerRequest)),
				mib(float64(o.Cost.RSSBytes)), mib(float64(n.Cost.RSSBytes)),
				o.Load.Errors, n.Load.Errors, o.Load.WrongVerdict, n.Load.WrongVerdict, o.Cost.APIRequests)
		}
		fmt.Fprintln(tw)
	}
	var base, floor float64
	for _, a := range r.APIServer {
		switch a.Webhook {
		case "none":
			base = a.Load.PerSecond
		case "noop":
			floor = a.Load.PerSecond
		}
	}
	if len(r.APIServer) > 0 {
		fmt.Fprintf(tw, "through the API server (dry-run Pod create, 5 CEL validations in force, %s rounds)\treq/s median\t×no webhook\t×noop\ttotal req/s\tp50\tp99\tmax\twebhook CPU/req\terrors\twrong\tAPI reqs\t\n", r.Settings["apiserverRounds"])
		for _, a := range r.APIServer {
			fmt.Fprintf(tw, "webhook=%s c=%d\t%.0f\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t%.0f\t\n", a.Webhook, a.Concurrency,
				a.Load.PerSecond, ratio(a.Load.PerSecond, base), ratio(a.Load.PerSecond, floor), a.Load.TotalPerSecond,
				ms(a.Load.P50), ms(a.Load.P99), ms(a.Load.Max), us(a.Cost.CPUPerRequest), a.Load.Errors, a.Load.WrongVerdict, a.Cost.APIRequests)
		}
		fmt.Fprintln(tw)
	}
	if len(r.Registries) > 0 {
		var none float64
		for _, a := range r.Registries {
			if a.Webhook == "none" {
				none = a.Load.PerSecond
			}
		}
		fmt.Fprintf(tw, "the registries rule through the API server (dry-run Pod create, %s rounds)\treq/s median\t×none\ttotal req/s\tp50\tp99\tmax\twebhook CPU/req\terrors\twrong\t\n", r.Settings["apiserverRounds"])
		for _, a := range r.Registries {
			fmt.Fprintf(tw, "%s c=%d\t%.0f\t%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t\n", registriesName(a.Webhook), a.Concurrency,
				a.Load.PerSecond, ratio(a.Load.PerSecond, none), a.Load.TotalPerSecond,
				ms(a.Load.P50), ms(a.Load.P99), ms(a.Load.Max), us(a.Cost.CPUPerRequest), a.Load.Errors, a.Load.WrongVerdict)
		}
		fmt.Fprintln(tw)
	}
	if p := r.Propagation; p.Edits > 0 {
		fmt.Fprintf(tw, "policy edit → enforced (%d edits)\tp50 %s\tp99 %s\tmax %s\t\n", p.Edits, ms(p.P50), ms(p.P99), ms(p.Max))
	}
	if p := r.PropagationCEL; p.Edits > 0 {
		fmt.Fprintf(tw, "CEL policy edit → enforced (%d edits)\tp50 %s\tp99 %s\tmax %s\t\n", p.Edits, ms(p.P50), ms(p.P99), ms(p.Max))
	}
	if r.Propagation.Edits > 0 || r.PropagationCEL.Edits > 0 {
		fmt.Fprintln(tw)
	}
	if q := r.Quota; q.Creates > 0 {
		fmt.Fprintf(tw, "MyApple create through the API server (%d each, c=%d)\tp50\tp99\treq/s\twebhook API reqs/create\t\n", q.Creates, q.Concurrency)
		for _, row := range []struct {
			name string
			s    quotaSide
		}{{"no quota policy", q.Without}, {"enforced quota", q.With}} {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.2f\t\n", row.name, ms(row.s.P50), ms(row.s.P99), row.s.PerSecond, row.s.APIRequestsPerCreate)
		}
		fmt.Fprintln(tw)
	}
	if a := r.AuditLoad; a.Quiet.Requests > 0 {
		fmt.Fprintf(tw, "direct allowed Pods c=%d\treq/s median\tp50\tp99\tmax\terrors\twrong\tsweeps\t\n", a.Concurrency)
		for _, row := range []struct {
			name   string
			l      loadResult
			sweeps float64
		}{{"no sweep running", a.Quiet, a.QuietSweeps}, {fmt.Sprintf("sweeping (%.0f objects each)", a.ObjectsPerSweep), a.Sweeping, a.Sweeps}} {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%.0f\t\n", row.name, row.l.PerSecond, ms(row.l.P50), ms(row.l.P99), ms(row.l.Max), row.l.Errors, row.l.WrongVerdict, row.sweeps)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "memory\tobjects\tRSS\tlive heap\theap/object\tcreates retried\t\n")
	fmt.Fprintf(tw, "idle after sync\t\t%s (noop %s)\t\t\t\n", mib(float64(r.IdleRSS["policy-webhook"])), mib(float64(r.IdleRSS["noop"])))
	for _, m := range r.Memory {
		per := "-"
		switch {
		case m.Objects == 0:
		// A batch the heap did not grow for can measure a fraction of a
		// byte less than before, which %.0f would print as "-0".
		case math.Abs(m.HeapPerObject) < 0.5:
			per = "0 B"
		default:
			per = fmt.Sprintf("%.0f B", m.HeapPerObject)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t\n", m.Stage, m.Objects, mib(float64(m.RSSBytes)), mib(m.Heap), per, m.Fill.Retries)
	}
	if len(r.Rollout) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "rollout through kube-controller-manager	deployments	pods	all Pods exist after	×none	\n")
		var none []time.Duration
		for _, row := range r.Rollout {
			if row.Webhook == "none" {
				none = append(none, row.Took)
			}
		}
		for i, row := range r.Rollout {
			x := "-"
			if row.Webhook != "none" && len(none) > i/2 {
				x = ratio(float64(row.Took), float64(none[i/2]))
			}
			fmt.Fprintf(tw, "webhook %s\t%d\t%d\t%s\t%s\t\n", row.Webhook, row.Deployments, row.Pods, row.Took.Round(time.Millisecond), x)
		}
	}
	_ = tw.Flush()
}

func (r *report) write(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
