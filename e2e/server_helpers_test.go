package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/testutil"
)

// server is a `k2 server` process started by a test.
type server struct {
	t       testing.TB
	DataDir string
	Port    int
	cmd     *exec.Cmd
	log     *testutil.SyncBuffer
	done    chan struct{}
	exitErr error
}

// startServer runs `k2 server` on dataDir with free ports and waits until it
// reports ready. The process is killed when the test ends if still running.
func startServer(t testing.TB, dataDir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, DataDir: dataDir, Port: testutil.FreePort(t), log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	args := append([]string{"server", "--data-dir", dataDir, "--bind-address", "127.0.0.1",
		"--port", strconv.Itoa(s.Port), "--join-port", strconv.Itoa(testutil.FreePort(t))}, extra...)
	s.cmd = exec.Command(k2Bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(s.log.String(), "k2 server ready") {
		select {
		case <-s.done:
			t.Fatalf("k2 server exited before ready: %v\n%s", s.exitErr, s.log.String())
		case <-deadline:
			t.Fatalf("k2 server not ready after 2m:\n%s", s.log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return s
}

// runDBClient runs a database's command-line client (psql, mariadb) for
// at most 30 s and returns its output, trimmed; a failure fails the test.
func runDBClient(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// parseCount reads the number a count query printed.
func parseCount(t testing.TB, query, out string) int {
	t.Helper()
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("%s: not a count: %q", query, out)
	}
	return n
}

// applyWorkload applies testutil's workload.yaml with the real kubectl and waits until
// the in-process controllers made its ReplicaSet and 2 Pods.
func (s *server) applyWorkload(t *testing.T, timeout time.Duration) {
	t.Helper()
	manifest := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(manifest, []byte(testutil.Fixture("workload.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	s.mustKubectl("apply", "-f", manifest)
	eventually(t, timeout, "ReplicaSet and 2 Pods from the Deployment", func() error {
		out, err := s.kubectl("get", "rs,pods", "-l", "app=web", "-o", "name")
		if err != nil {
			return err
		}
		if strings.Count(out, "replicaset.apps/") != 1 || strings.Count(out, "pod/") != 2 {
			return fmt.Errorf("got %q", out)
		}
		return nil
	})
}

// Kubeconfig is the admin kubeconfig the server wrote.
func (s *server) Kubeconfig() string { return filepath.Join(s.DataDir, "admin.kubeconfig") }

// Client returns a client-go clientset with no client-side rate limit.
func (s *server) Client() *kubernetes.Clientset {
	s.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	return cs
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *server) Stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.exitErr != nil {
			s.t.Fatalf("k2 server exited with %v after SIGTERM\n%s", s.exitErr, s.log.String())
		}
	case <-time.After(time.Minute):
		s.t.Fatalf("k2 server did not stop within 1m of SIGTERM")
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *server) Kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// kubectl runs the preinstalled kubectl against the server.
func (s *server) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", s.Kubeconfig()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %v: %w\n%s", args, err, errb.String())
	}
	return out.String(), nil
}

func (s *server) mustKubectl(args ...string) string {
	s.t.Helper()
	out, err := s.kubectl(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
