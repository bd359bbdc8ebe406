package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// RoundRobin listens on 127.0.0.1 and passes each connection, TLS and all,
// to the next backend in turn: one Service in front of several replicas.
// It stops when t ends.
func RoundRobin(t testing.TB, backends []string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	var next atomic.Uint64
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", backends[next.Add(1)%uint64(len(backends))])
			if err != nil {
				_ = in.Close()
				continue
			}
			wg.Go(func() { _, _ = io.Copy(out, in); _ = out.Close() })
			wg.Go(func() { _, _ = io.Copy(in, out); _ = in.Close() })
		}
	})
	return l.Addr().String()
}
