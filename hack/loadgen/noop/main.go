// Command noop is the floor the load harness measures policy-webhook
// against: a validating webhook on the standard library's TLS server and
// encoding/json with a static registry allowlist and nothing else. It is
// deliberately stdlib-only, so its CPU and RSS are what any Go webhook
// cannot go below. Not part of the production binary.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// noopAllowlist is the no-op webhook's static registry rule: the same
// prefixes the benchmark's policy ConfigMap allows, compiled in.
var noopAllowlist = [...]string{"registry.example.com/", "ghcr.io/acme/"}

// noopReview is the part of an AdmissionReview the no-op webhook reads.
type noopReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID    string `json:"uid"`
		Object struct {
			Spec struct {
				InitContainers []struct {
					Image string `json:"image"`
				} `json:"initContainers"`
				Containers []struct {
					Image string `json:"image"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"object"`
	} `json:"request"`
}

type noopResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status,omitempty"`
	} `json:"response"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

// run is the floor every webhook is measured against: the standard
// library's TLS server and encoding/json, a static allowlist, nothing else.
// It answers every path, so it can stand in for the whole registration.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("noop", flag.ExitOnError)
	certDir := fs.String("cert-dir", "", "directory holding tls.crt and tls.key")
	port := fs.Int("port", 9443, "TLS port on 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the serving certificate from %s: %w", *certDir, err)
	}
	srv := &http.Server{
		Addr:              net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)),
		Handler:           http.HandlerFunc(noopHandle),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		// The same protocol controller-runtime's webhook server speaks:
		// HTTP/2 is off there by default.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	fmt.Fprintln(os.Stderr, "noop webhook serving on", srv.Addr)
	if err := srv.ListenAndServeTLS("", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the no-op webhook: %w", err)
	}
	return nil
}

func noopHandle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" || r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	var in noopReview
	if err := json.NewDecoder(io.LimitReader(r.Body, 3<<20)).Decode(&in); err != nil || in.Request == nil {
		http.Error(w, "bad AdmissionReview", http.StatusBadRequest)
		return
	}
	var out noopResponse
	out.APIVersion, out.Kind = in.APIVersion, in.Kind
	out.Response.UID = in.Request.UID
	out.Response.Allowed = true
	spec := in.Request.Object.Spec
	images := make([]string, 0, len(spec.InitContainers)+len(spec.Containers))
	for _, c := range spec.InitContainers {
		images = append(images, c.Image)
	}
	for _, c := range spec.Containers {
		images = append(images, c.Image)
	}
	for _, img := range images {
		if !noopAllowed(img) {
			out.Response.Allowed = false
			out.Response.Status = &struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}{http.StatusForbidden, "image " + img + " is not from an allowed registry"}
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&out)
}

func noopAllowed(image string) bool {
	for _, p := range noopAllowlist {
		if strings.HasPrefix(image, p) {
			return true
		}
	}
	return false
}
