package osinit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/pki"
)

// fakeK2 is a stand-in for the k2 binary: each run records its argv and
// the join token it got from the environment in <dir>/<subcommand>.<n>,
// then waits for SIGTERM and records that. The trap is set before the
// record appears: the test stops the process as soon as it sees it.
func fakeK2(t *testing.T) (bin, dir string) {
	dir = t.TempDir()
	bin = filepath.Join(dir, "k2")
	script := `#!/bin/sh
n=0; while [ -e "` + dir + `/$1.$n" ]; do n=$((n+1)); done
f="` + dir + `/$1.$n"
trap 'echo stopped >> "$f"; exit 0' TERM
{ for a in "$@"; do echo "arg $a"; done; echo "token $K2_AGENT_TOKEN"; echo "seed ${K2_SERVER_SEED:+set}"; echo "pid $$"; } > "$f.tmp"
mv "$f.tmp" "$f"
echo "$1 says hello"
while :; do sleep 0.1; done
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readRecord(t *testing.T, path string) (args []string, fields map[string]string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields = map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		if k == "arg" {
			args = append(args, v)
		} else {
			fields[k] = v
		}
	}
	return args, fields
}

func newToken(t *testing.T) string {
	tok, err := join.NewToken([]byte("some CA"))
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

func TestRunSupervisesAgent(t *testing.T) {
	bin, rec := fakeK2(t)
	dir := t.TempDir()
	tok := newToken(t)
	cfg := &machineconfig.Config{Role: machineconfig.RoleWorker, NodeName: "w1", Server: "https://10.0.0.5:6443", Token: tok,
		Labels: map[string]string{"z": "1", "k2.dev/pool": "workers"}, Runtime: "sim"}
	b, _ := machineconfig.Encode(cfg, false)
	cfgFile := filepath.Join(dir, "machine.yaml")
	os.WriteFile(cfgFile, b, 0o600)
	var out testutil.SyncBuffer
	socket := filepath.Join(dir, "init.sock")
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfgFile, DataDir: filepath.Join(dir, "data"), K2Binary: bin, Socket: socket,
			Console: &out, Logger: slog.New(slog.NewTextHandler(&out, nil))})
	}()
	waitFor(t, "the agent", 10*time.Second, func() bool { _, err := os.Stat(filepath.Join(rec, "agent.0")); return err == nil })
	args, fields := readRecord(t, filepath.Join(rec, "agent.0"))
	want := []string{"agent", "--data-dir", filepath.Join(dir, "data", "agent"), "--server", "https://10.0.0.5:6443", "--role", "worker",
		"--runtime", "sim", "--join-url", "https://10.0.0.5:6444", "--node-name", "w1", "--labels", "k2.dev/pool=workers,z=1"}
	if d := cmp.Diff(want, args); d != "" {
		t.Errorf("agent argv (-want +got):\n%s", d)
	}
	if fields["token"] != tok {
		t.Error("the agent did not get the join token in K2_AGENT_TOKEN")
	}
	if _, err := os.Stat(filepath.Join(rec, "server.0")); err == nil {
		t.Error("a worker ran k2 server")
	}
	waitFor(t, "the agent's output on the console", 5*time.Second, func() bool { return strings.Contains(out.String(), "agent: agent says hello") })

	// The API reports it; a killed agent is restarted.
	st, err := GetStatus(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != "running" || st.Role != "worker" || st.Node != "w1" || st.Source != "--config "+cfgFile || len(st.Processes) != 1 || !st.Processes[0].Running {
		t.Errorf("status: %+v", st)
	}
	syscall.Kill(st.Processes[0].PID, syscall.SIGKILL)
	waitFor(t, "the restarted agent", 10*time.Second, func() bool { _, err := os.Stat(filepath.Join(rec, "agent.1")); return err == nil })
	st, _ = GetStatus(ctx, socket)
	if st.Processes[0].Restarts != 1 || st.Processes[0].LastExit != "killed by SIGKILL" {
		t.Errorf("after a kill: %+v", st.Processes[0])
	}

	// A stop request stops the agent with SIGTERM and ends Run.
	if err := Request(ctx, socket, ActionPowerOff); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after a stop request")
	}
	if b, _ := os.ReadFile(filepath.Join(rec, "agent.1")); !strings.Contains(string(b), "stopped") {
		t.Errorf("the agent was not stopped with SIGTERM:\n%s", b)
	}
	if strings.Contains(out.String(), strings.SplitN(tok, ".", 2)[1]) {
		t.Error("the console shows the join token's secret")
	}
}

func TestRunRetriesUntilConfig(t *testing.T) {
	bin, rec := fakeK2(t)
	dir := t.TempDir()
	tok := newToken(t)
	cidata := &switchSource{name: "cidata", err: ErrNoConfig}
	sources := []Source{&fakeSource{name: "kernel command line", err: ErrNoConfig}, cidata, &fakeSource{name: "IMDS", err: ErrNoConfig}}
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Sources: sources, DataDir: dir, K2Binary: bin, Socket: filepath.Join(dir, "s"), RetryInterval: 20 * time.Millisecond,
			Console: &out, Logger: slog.New(slog.NewTextHandler(&out, nil))})
	}()
	waitFor(t, "the no-config message", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "no machine config found: tried kernel command line, cidata, IMDS")
	})
	// A bad config is reported, problem by problem, and retried.
	cidata.set([]byte("apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: boss\n"), nil)
	waitFor(t, "the invalid-config message", 5*time.Second, func() bool {
		s := out.String()
		return strings.Contains(s, "machine config from cidata: invalid machine config: line 3: role") && strings.Contains(s, "server: missing")
	})
	good, _ := machineconfig.Encode(&machineconfig.Config{Role: "worker", Server: "https://10.0.0.5:6443", Token: tok, Runtime: "sim"}, false)
	cidata.set(good, nil)
	waitFor(t, "the agent", 10*time.Second, func() bool { _, err := os.Stat(filepath.Join(rec, "agent.0")); return err == nil })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// switchSource is a source whose answer the test changes.
type switchSource struct {
	mu   sync.Mutex
	name string
	doc  []byte
	err  error
}

func (s *switchSource) Name() string { return s.name }
func (s *switchSource) set(doc []byte, err error) {
	s.mu.Lock()
	s.doc, s.err = doc, err
	s.mu.Unlock()
}
func (s *switchSource) Fetch(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.doc == nil && s.err == nil {
		return nil, ErrNoConfig
	}
	if s.doc == nil {
		return nil, s.err
	}
	return s.doc, nil
}

func TestServerChildren(t *testing.T) {
	pdir := filepath.Join(t.TempDir(), "pki")
	p, err := pki.Ensure(pdir, pki.Options{ServiceIP: net.ParseIP("10.43.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range []string{pki.CACert, pki.CAKey} {
		b, _ := os.ReadFile(filepath.Join(pdir, n))
		tw.WriteHeader(&tar.Header{Name: "pki/" + n, Mode: 0o600, Size: int64(len(b))})
		tw.Write(b)
	}
	tw.Close()
	gz.Close()
	tok, _ := join.NewToken(p.CAData)
	id := base64.StdEncoding.EncodeToString(buf.Bytes())
	cfg := &machineconfig.Config{APIVersion: machineconfig.APIVersion, Kind: machineconfig.Kind, Role: "control-plane", NodeName: "cp", Token: tok.String(),
		ControlPlane: &machineconfig.ControlPlane{Identity: id, Port: 7443, JoinPort: 7444, TLSSANs: []string{"203.0.113.9"}, ClusterCIDR: "10.50.0.0/16"}}
	if _, err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &runner{o: Options{K2Binary: "/k2", DataDir: "/var/lib/k2"}}
	procs, err := r.children(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 2 || procs[0].name != "server" || procs[1].name != "agent" {
		t.Fatalf("children: %v", names(procs))
	}
	if d := cmp.Diff([]string{"/k2", "server", "--data-dir", "/var/lib/k2/server", "--port", "7443", "--join-port", "7444",
		"--tls-san", "203.0.113.9", "--cluster-cidr", "10.50.0.0/16"}, procs[0].argv); d != "" {
		t.Errorf("server argv (-want +got):\n%s", d)
	}
	if !slices.Contains(procs[0].env, "K2_SERVER_SEED="+id) || procs[0].ready == nil {
		t.Error("the server gets the identity as K2_SERVER_SEED and waits for /readyz")
	}
	if d := cmp.Diff([]string{"/k2", "agent", "--data-dir", "/var/lib/k2/agent", "--server", "https://127.0.0.1:7443", "--role", "control-plane",
		"--runtime", "kubelet", "--join-url", "https://127.0.0.1:7444", "--node-name", "cp"}, procs[1].argv); d != "" {
		t.Errorf("agent argv on the control plane (-want +got):\n%s", d)
	}
	for _, p := range procs {
		for _, a := range p.argv {
			if strings.Contains(a, tok.Secret) || strings.Contains(a, id[:20]) {
				t.Errorf("%s argv carries a secret", p.name)
			}
		}
	}
	no := false
	cfg.ControlPlane.Node = &no
	if procs, _ := r.children(cfg); len(procs) != 1 {
		t.Errorf("node: false still runs an agent")
	}
}
