package local_test

// The benchmark of the local provider bringing real `k2 agent` processes
// into a real control plane. It needs the k2 binary: set K2_BIN (make bench
// does), otherwise it is skipped. The same path is tested end to end in
// e2e/plugin_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/agent/agenttest"
)

var clusterUsed bool

func TestMain(m *testing.M) {
	code := m.Run()
	if clusterUsed {
		if c, err := agenttest.Start(); err == nil {
			os.RemoveAll(c.Dir)
		}
	}
	os.Exit(code)
}

func needCluster(tb testing.TB) (*agenttest.Cluster, string) {
	tb.Helper()
	bin := os.Getenv("K2_BIN")
	if bin == "" || testing.Short() {
		tb.Skip("needs K2_BIN (a k2 binary with `agent`) and a control plane")
	}
	clusterUsed = true
	c, err := agenttest.Start()
	if err != nil {
		tb.Fatal(err)
	}
	return c, bin
}

// localMachines runs Create on the built-in local provider served by bin
// and waits until every node is Ready; it returns the time from launching
// the plugin to the last node Ready.
func localMachines(tb testing.TB, c *agenttest.Cluster, bin, reqID string, cfg sdk.Config, names []string) (*host.Client, time.Duration) {
	tb.Helper()
	ctx := context.Background()
	t0 := time.Now()
	p, err := host.Launch(ctx, host.Plugin{Name: "local", Path: bin, Builtin: true}, host.LaunchOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cleanupAll(bin, cfg) })
	var ms []sdk.MachineRequest
	for _, n := range names {
		ms = append(ms, sdk.MachineRequest{Name: n, Role: "worker", Pool: "workers", CPU: 2, MemoryBytes: 2 << 30})
	}
	resp, err := p.Create(ctx, &sdk.CreateRequest{
		RequestID: reqID, Config: cfg, Machines: ms,
		Bootstrap: sdk.Bootstrap{
			Method:    sdk.BootstrapExec,
			Command:   []string{bin, "agent", "--join-url", c.JoinURL, "--log-format", "json"},
			ServerURL: c.Server.URL, JoinToken: c.Token.String(),
		},
	})
	if err != nil || resp.Diagnostics.HasErrors() {
		tb.Fatalf("Create: %v %v", err, resp.Diagnostics.Err())
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			node, err := c.Kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil || !agenttest.NodeReady(node) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		tb.Fatalf("nodes %v not Ready: %v", names, err)
	}
	return p, time.Since(t0)
}

func deleteMachines(tb testing.TB, c *agenttest.Cluster, p *host.Client, cfg sdk.Config, names []string) {
	tb.Helper()
	ctx := context.Background()
	var ids []string
	for _, n := range names {
		ids = append(ids, "local-"+n)
	}
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{RequestID: "cleanup", Config: cfg, MachineIDs: ids}); err != nil {
		tb.Error(err)
	}
	for _, n := range names {
		_ = c.Kube.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
	}
}

// BenchmarkLocalThreeAgentsReady measures the local provider bringing
// three agents to Ready against a running control plane: plugin launch,
// Create, the agents joining and registering.
func BenchmarkLocalThreeAgentsReady(b *testing.B) {
	c, bin := needCluster(b)
	var total time.Duration
	i := 0
	for b.Loop() {
		dir := b.TempDir()
		cfg, _ := json.Marshal(map[string]string{"stateDir": dir})
		names := []string{fmt.Sprintf("bench-%d-a", i), fmt.Sprintf("bench-%d-b", i), fmt.Sprintf("bench-%d-c", i)}
		p, took := localMachines(b, c, bin, fmt.Sprintf("bench-%d", i), cfg, names)
		total += took
		b.StopTimer()
		deleteMachines(b, c, p, cfg, names)
		p.Close()
		b.StartTimer()
		i++
	}
	b.ReportMetric(total.Seconds()/float64(i), "s/3-agents-ready")
}

// cleanupAll deletes every machine under cfg, so that a failed benchmark
// leaves no agent process behind.
func cleanupAll(bin string, cfg sdk.Config) {
	ctx := context.Background()
	p, err := host.Launch(ctx, host.Plugin{Name: "local", Path: bin, Builtin: true}, host.LaunchOptions{})
	if err != nil {
		return
	}
	defer p.Close()
	l, err := p.List(ctx, &sdk.ListRequest{Config: cfg})
	if err != nil {
		return
	}
	var ids []string
	for _, m := range l.Machines {
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		_, _ = p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids})
	}
}

// BenchmarkLaunchBuiltin measures launching the built-in local provider as
// k2 does (re-executing the k2 binary as `k2 plugin serve local`) and the
// handshake; compare BenchmarkLaunch in providers/host (a small external
// plugin).
func BenchmarkLaunchBuiltin(b *testing.B) {
	bin := os.Getenv("K2_BIN")
	if bin == "" {
		b.Skip("needs K2_BIN")
	}
	start := time.Now()
	for b.Loop() {
		p, err := host.Launch(context.Background(), host.Plugin{Name: "local", Path: bin, Builtin: true}, host.LaunchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/launch")
}
