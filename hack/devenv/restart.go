package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// apiServerStartTimeout bounds a restart of kube-apiserver until /readyz,
// on a loaded 2-core machine.
const apiServerStartTimeout = 90 * time.Second

// apiServer is a kube-apiserver this package started again after
// StopAPIServer, with the flags of the one envtest started.
type apiServer struct {
	path string
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited and been reaped
	out  *bytes.Buffer
}

// StopAPIServer kills kube-apiserver with SIGKILL, as a crash or an OOM
// kill would, leaving etcd running, and returns once its port refuses
// connections. StartAPIServer starts it again. Linux only: the first time,
// the process envtest started is found under /proc.
func (c *ControlPlane) StopAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		s, err := c.findAPIServer()
		if err != nil {
			return err
		}
		c.apiserver = s
	}
	s := c.apiserver
	switch {
	case s.cmd != nil:
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("killing kube-apiserver: %w", err)
		}
		<-s.done
		s.cmd = nil
	case s.done != nil:
		return errors.New("kube-apiserver is stopped already")
	default:
		// envtest's own process: envtest reaps it.
		if err := syscall.Kill(c.envPID, syscall.SIGKILL); err != nil {
			return fmt.Errorf("killing kube-apiserver (pid %d): %w", c.envPID, err)
		}
		s.done = make(chan struct{})
		close(s.done)
	}
	addr := c.apiServerAddr()
	return Poll(ctx, 10*time.Second, func(context.Context) error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil //nolint:nilerr // refused: what is awaited
		}
		conn.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	})
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, with the
// same flags, certificates, port and etcd, so that every client's
// configuration keeps working, and waits until it is ready (CRDs served).
func (c *ControlPlane) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.apiserver
	if s == nil || s.cmd != nil {
		return errors.New("kube-apiserver is running: StopAPIServer first")
	}
	cmd := exec.Command(s.path, s.args...)
	s.out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	rc := c.Client.Discovery().RESTClient()
	err := Poll(ctx, apiServerStartTimeout, func(ctx context.Context) error {
		select {
		case <-done:
			return Final(errors.New("kube-apiserver exited"))
		default:
		}
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("readyz: %w: %s", err, body)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the restarted kube-apiserver: %w; its output ends: %s", err, tail(s.out.String(), 2000))
	}
	return nil
}

// stopRestarted stops a kube-apiserver StartAPIServer started, before
// envtest stops etcd.
func (c *ControlPlane) stopRestarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil || c.apiserver.cmd == nil {
		return
	}
	s := c.apiserver
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
	}
	s.cmd = nil
}

func (c *ControlPlane) apiServerAddr() string {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return c.Config.Host
	}
	return u.Host
}

// findAPIServer finds the kube-apiserver envtest started for this control
// plane: a child of this process running the assets' kube-apiserver with
// this control plane's --secure-port.
func (c *ControlPlane) findAPIServer() (*apiServer, error) {
	_, port, err := net.SplitHostPort(c.apiServerAddr())
	if err != nil {
		return nil, fmt.Errorf("reading the API server's port from %s: %w", c.Config.Host, err)
	}
	want := filepath.Join(c.env.BinaryAssetsDirectory, "kube-apiserver")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after
		// its closing parenthesis.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if len(argv) == 0 || filepath.Clean(argv[0]) != want || !hasArg(argv[1:], "--secure-port="+port) {
			continue
		}
		c.envPID = pid
		return &apiServer{path: argv[0], args: argv[1:]}, nil
	}
	return nil, fmt.Errorf("no kube-apiserver child of this process serves port %s", port)
}

func hasArg(args []string, arg string) bool {
	for _, a := range args {
		if a == arg {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// EtcdURL is the client URL of the control plane's etcd.
func (c *ControlPlane) EtcdURL() *url.URL { return c.env.ControlPlane.Etcd.URL }
