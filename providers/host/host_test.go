package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// pluginDir holds k2-provider-example, built once for the package.
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "k2-host-test")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "k2-provider-example"), "k2.dev/k2/examples/provider-example")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("building the example plugin:", err)
		os.Exit(1)
	}
	pluginDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func discoverOpts() host.DiscoverOptions {
	return host.DiscoverOptions{PluginPath: pluginDir, Home: "/nonexistent-k2-home"}
}

func launch(t testing.TB, logger *slog.Logger) *host.Client {
	t.Helper()
	p, err := host.Find(discoverOpts(), "example")
	if err != nil {
		t.Fatal(err)
	}
	c, err := host.Launch(context.Background(), p, host.LaunchOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func stateConfig(dir string, delay string) sdk.Config {
	b, _ := json.Marshal(map[string]any{"stateDir": dir, "bootDelay": delay})
	return b
}

func TestDiscover(t *testing.T) {
	extra := t.TempDir()
	// Not executable, wrong prefix, and a second "example" later in the path.
	os.WriteFile(filepath.Join(extra, "k2-provider-noexec"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(extra, "other-tool"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(extra, "k2-provider-example"), []byte("x"), 0o755)
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "plugins"), 0o755)
	os.WriteFile(filepath.Join(home, "plugins", "k2-provider-homeonly"), []byte("x"), 0o755)
	got, err := host.Discover(host.DiscoverOptions{
		PluginPath: pluginDir + ":" + extra, Home: home,
		Builtins: []string{"local", "example"}, Self: "/usr/bin/k2",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []host.Plugin{
		{Name: "example", Path: filepath.Join(pluginDir, "k2-provider-example"), Shadows: []string{filepath.Join(extra, "k2-provider-example"), "builtin"}},
		{Name: "homeonly", Path: filepath.Join(home, "plugins", "k2-provider-homeonly")},
		{Name: "local", Path: "/usr/bin/k2", Builtin: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discover (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/usr/bin/k2", "plugin", "serve", "local"}, got[2].Args()); diff != "" {
		t.Errorf("builtin args (-want +got):\n%s", diff)
	}
	_, err = host.Find(discoverOpts(), "nope")
	if usererr.ExitCode(context.Background(), err) != int(usererr.KindProvider) || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Errorf("Find(nope) = %v", err)
	}
}

// TestExampleConformance runs the kit against the example plugin as a real
// executable found on K2_PLUGIN_PATH and launched through go-plugin.
func TestExampleConformance(t *testing.T) {
	providertest.RunClient(t, func(t *testing.T) sdk.Provider { return launch(t, nil) },
		providertest.WithConfig(func(t *testing.T) sdk.Config { return stateConfig(t.TempDir(), "0s") }))
}

// TestKillMidCreate kills the plugin process while Create is booting a
// machine: the host must name the plugin and say it crashed, and a retry
// with the same request id in a new plugin process must not duplicate it.
func TestKillMidCreate(t *testing.T) {
	state := t.TempDir()
	var logs testutil.SyncBuffer
	c := launch(t, slog.New(slog.NewTextHandler(&logs, nil)))
	ms := []sdk.MachineRequest{{Name: "m0", Class: "small"}, {Name: "m1", Class: "small"}}
	booting := make(chan struct{}, 4)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Create(context.Background(), &sdk.CreateRequest{
			RequestID: "req-1", Config: stateConfig(state, "30s"), Machines: ms,
			Bootstrap:  sdk.Bootstrap{Method: sdk.BootstrapUserData},
			OnProgress: func(p sdk.Progress) { booting <- struct{}{} },
		})
		errc <- err
	}()
	<-booting // allocated m0
	if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("Create did not return after the plugin was killed")
	}
	var he *host.Error
	if !errors.As(err, &he) || !he.Exited || he.Provider != "example" {
		t.Fatalf("Create error = %#v, want a host.Error with Exited for provider example", err)
	}
	if code := usererr.ExitCode(context.Background(), err); code != int(usererr.KindProvider) {
		t.Errorf("exit code %d, want %d", code, usererr.KindProvider)
	}
	t.Logf("reported: %v", err)
	if l := logs.String(); !strings.Contains(l, "provider=example") || !strings.Contains(l, `msg="creating machines"`) || !strings.Contains(l, "request=req-1") {
		t.Errorf("the plugin's log is not relayed with provider=example:\n%s", l)
	}
	if !strings.Contains(err.Error(), `provider "example" crashed during Create`) {
		t.Errorf("error does not name the plugin and the call: %v", err)
	}

	c2 := launch(t, nil)
	resp, err := c2.Create(context.Background(), &sdk.CreateRequest{
		RequestID: "req-1", Config: stateConfig(state, "0s"), Machines: ms,
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapUserData},
	})
	if err != nil || resp.Diagnostics.HasErrors() {
		t.Fatalf("retry: %v %v", err, resp.Diagnostics)
	}
	list, err := c2.List(context.Background(), &sdk.ListRequest{Config: stateConfig(state, "0s")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Machines {
		names = append(names, m.Name+"="+m.State)
	}
	if diff := cmp.Diff([]string{"m0=running", "m1=running"}, names); diff != "" {
		t.Errorf("machines after the retry (-want +got):\n%s", diff)
	}
}

// TestHungPlugin: a call that outlives its deadline is reported as a hang
// naming the plugin.
func TestHungPlugin(t *testing.T) {
	p, _ := host.Find(discoverOpts(), "example")
	c, err := host.Launch(context.Background(), p, host.LaunchOptions{Timeouts: host.Timeouts{Create: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Create(context.Background(), &sdk.CreateRequest{
		RequestID: "slow", Config: stateConfig(t.TempDir(), "1h"), Machines: []sdk.MachineRequest{{Name: "m0"}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapUserData},
	})
	var he *host.Error
	if !errors.As(err, &he) || !he.TimedOut || !strings.Contains(err.Error(), `provider "example" did not finish Create in time`) {
		t.Fatalf("err = %v", err)
	}
}

func TestValidateChecksSchema(t *testing.T) {
	c := launch(t, nil)
	cfg, err := host.LoadConfig("", []string{"stateDir=/tmp/x", "bootDelay=soon", "colour=blue"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Validate(context.Background(), &sdk.ValidateRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, d := range resp.Diagnostics {
		paths = append(paths, d.Path)
	}
	if diff := cmp.Diff([]string{"config.bootDelay", "config.colour"}, paths); diff != "" {
		t.Errorf("diagnostic paths (-want +got):\n%s\n%v", diff, resp.Diagnostics)
	}
}

func TestLoadConfig(t *testing.T) {
	schema := []sdk.ConfigField{{Name: "num", Type: sdk.TypeInt}, {Name: "b", Type: sdk.TypeBool}, {Name: "l", Type: sdk.TypeList}, {Name: "s"}}
	f := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(f, []byte("s: from-file\nnum: 1\n"), 0o644)
	got, err := host.LoadConfig(f, []string{"num=7", "b=true", "l=a, b"}, schema)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(`{"b":true,"l":["a","b"],"num":7,"s":"from-file"}`, string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := host.LoadConfig(f, []string{"num=x"}, schema); usererr.ExitCode(context.Background(), err) != int(usererr.KindInvalid) {
		t.Errorf("bad int: %v", err)
	}
}

// BenchmarkLaunch measures starting the plugin process and the go-plugin
// handshake (target ≤ 50 ms).
func BenchmarkLaunch(b *testing.B) {
	p, err := host.Find(discoverOpts(), "example")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for b.Loop() {
		c, err := host.Launch(context.Background(), p, host.LaunchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/launch")
}

// BenchmarkRoundTrip measures one List call to a running plugin process
// (target ≤ 1 ms).
func BenchmarkRoundTrip(b *testing.B) {
	c := launch(b, nil)
	cfg := stateConfig(b.TempDir(), "0s")
	ctx := context.Background()
	// The first call sets up the connection; measure steady calls.
	if _, err := c.List(ctx, &sdk.ListRequest{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for b.Loop() {
		if _, err := c.List(ctx, &sdk.ListRequest{Config: cfg}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/call")
}

// TestHungAtLaunch: a plugin that never completes the handshake is
// reported by name once the start timeout passes.
func TestHungAtLaunch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k2-provider-sleepy"), []byte("#!/bin/sh\nexec sleep 60\n"), 0o755)
	p, err := host.Find(host.DiscoverOptions{PluginPath: dir}, "sleepy")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = host.Launch(context.Background(), p, host.LaunchOptions{Timeouts: host.Timeouts{Start: 500 * time.Millisecond}})
	if err == nil || !strings.Contains(err.Error(), `provider "sleepy"`) || usererr.ExitCode(context.Background(), err) != int(usererr.KindProvider) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Launch took %s", d)
	}
	t.Logf("reported: %v", err)
}

// TestReattachDebugMode runs the example plugin by hand in debug mode (as
// under a debugger) and has the host attach to it through
// $K2_PROVIDER_REATTACH instead of starting a process.
func TestReattachDebugMode(t *testing.T) {
	cmd := exec.Command(filepath.Join(pluginDir, "k2-provider-example"))
	cmd.Env = append(os.Environ(), sdk.DebugEnv+"=1")
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var line string
	for deadline := time.Now().Add(10 * time.Second); line == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(stderr.String(), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "export "+sdk.ReattachEnv+"='"); ok {
				line = strings.TrimSuffix(v, "'")
			}
		}
	}
	if line == "" {
		t.Fatalf("no reattach line from the plugin:\n%s", stderr.String())
	}
	t.Setenv(sdk.ReattachEnv, line)
	p, _ := host.Find(discoverOpts(), "example")
	c, err := host.Launch(context.Background(), p, host.LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid() != cmd.Process.Pid {
		t.Errorf("attached to pid %d, want the debug process %d", c.Pid(), cmd.Process.Pid)
	}
	d, err := c.Describe(context.Background(), nil)
	if err != nil || d.Name != "example" {
		t.Fatalf("Describe over reattach: %v %v", d, err)
	}
}
