package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"

	"github.com/policy-webhook/policy-webhook/hack/devenv"
)

// child is a server the harness runs as its own process, so its CPU time
// and RSS can be read from /proc without the load generator in them.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the child has exited
	err  error         // how it exited; set before done is closed
}

// startChild starts path with args, its output going to logw. The child
// gets SIGTERM if the harness dies, so nothing is left running.
func startChild(name, path string, args []string, logw io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, path, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and waits; SIGKILL after 10 s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitHTTP polls url until it answers 200, the child exits, or timeout
// passes.
func (c *child) waitHTTP(ctx context.Context, timeout time.Duration, client *http.Client, url string) error {
	err := devenv.Poll(ctx, timeout, func(ctx context.Context) error {
		select {
		case <-c.done:
			return devenv.Final(fmt.Errorf("%s exited: %w", c.name, c.err))
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return devenv.Final(fmt.Errorf("building a request: %w", err))
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to answer %s: %w", c.name, url, err)
	}
	return nil
}

// procSample is what /proc says about a process at one moment.
type procSample struct {
	at       time.Time
	cpu      time.Duration // user + system
	rssBytes int64
}

func readProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return s, fmt.Errorf("finding pid %d in /proc: %w", pid, err)
	}
	stat, err := p.Stat()
	if err != nil {
		return s, fmt.Errorf("reading the CPU time of pid %d: %w", pid, err)
	}
	s.cpu = time.Duration(stat.CPUTime() * float64(time.Second))
	status, err := p.NewStatus()
	if err != nil {
		return s, fmt.Errorf("reading the RSS of pid %d: %w", pid, err)
	}
	s.rssBytes = int64(status.VmRSS)
	return s, nil
}

// scrapeSum fetches a Prometheus text endpoint and sums every sample of
// the counter, gauge or untyped metric (all label sets).
func scrapeSum(ctx context.Context, client *http.Client, url, metric string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("building a request for %s: %w", url, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping %s: HTTP %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("parsing the metrics of %s: %w", url, err)
	}
	family, ok := families[metric]
	if !ok {
		return 0, fmt.Errorf("%s has no %s", url, metric)
	}
	var sum float64
	for _, m := range family.GetMetric() {
		switch family.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		default:
			return 0, fmt.Errorf("%s of %s is a %s, not a number to add up", metric, url, family.GetType())
		}
	}
	return sum, nil
}
