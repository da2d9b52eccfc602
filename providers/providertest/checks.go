package providertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/providers/sdk"
)

func (s *suite) describe(t *testing.T, e *env) {
	d := e.desc
	if d.Name == "" {
		t.Error("Describe: empty name")
	}
	c := d.Capabilities
	if len(c.Architectures) == 0 {
		t.Error("Describe: no architectures advertised")
	}
	if len(c.BootstrapMethods) == 0 {
		t.Error("Describe: no bootstrap methods advertised")
	}
	if len(c.Classes) == 0 && !c.CustomSizes {
		t.Error("Describe: neither machine classes nor custom sizes advertised")
	}
	for i, k := range c.Classes {
		if k.Name == "" {
			t.Errorf("Describe: class %d has no name", i)
		}
	}
	for _, f := range d.ConfigSchema {
		switch f.Type {
		case sdk.TypeString, sdk.TypeInt, sdk.TypeBool, sdk.TypeDuration, sdk.TypeList:
		default:
			t.Errorf("Describe: config field %q has unknown type %q", f.Name, f.Type)
		}
	}
	if ds := sdk.CheckConfig(d.ConfigSchema, e.cfg); ds.HasErrors() {
		t.Errorf("the config given to the kit does not match the provider's own schema: %v", ds.Err())
	}
}

func (s *suite) validateGood(t *testing.T, e *env) {
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.p.Validate(ctx, &sdk.ValidateRequest{Config: e.cfg, Machines: e.machines(2), Bootstrap: &e.boot})
	if isUnimplemented(err) {
		t.Skip("provider has no Validate")
	}
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if resp.Diagnostics.HasErrors() {
		t.Fatalf("Validate refused a valid request: %v", resp.Diagnostics.Err())
	}
}

func (s *suite) lifecycle(t *testing.T, e *env) {
	ms := e.machines(2)
	var progress int
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.p.Create(ctx, &sdk.CreateRequest{RequestID: "lifecycle", Config: e.cfg, Machines: ms, Bootstrap: e.boot,
		OnProgress: func(sdk.Progress) { progress++ }})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.Diagnostics.HasErrors() {
		t.Fatalf("Create refused a valid request: %v", resp.Diagnostics.Err())
	}
	t.Logf("Create sent %d progress events", progress)
	if len(resp.Machines) != len(ms) {
		t.Fatalf("Create returned %d machines, want %d", len(resp.Machines), len(ms))
	}
	got := byName(resp.Machines)
	for _, m := range ms {
		g, ok := got[m.Name]
		switch {
		case !ok:
			t.Errorf("Create: no machine named %q", m.Name)
		case g.ID == "":
			t.Errorf("Create: machine %q has no ID", m.Name)
		case g.State == sdk.StateFailed:
			t.Errorf("Create: machine %q failed: %s", m.Name, g.Message)
		case g.RequestID != "lifecycle":
			t.Errorf("Create: machine %q has request id %q, want %q", m.Name, g.RequestID, "lifecycle")
		case g.Arch != "" && !slices.Contains(e.desc.Capabilities.Architectures, g.Arch):
			t.Errorf("Create: machine %q has architecture %q, which is not advertised", m.Name, g.Arch)
		}
	}
	listed := e.list("")
	for _, m := range resp.Machines {
		if !slices.Contains(ids(listed), m.ID) {
			t.Errorf("List does not show created machine %s (%s)", m.Name, m.ID)
		}
	}
	if l := e.list("lifecycle"); !cmp.Equal(ids(l), ids(resp.Machines)) {
		t.Errorf("List(requestID) mismatch (-want +got):\n%s", cmp.Diff(ids(resp.Machines), ids(l)))
	}
	del := e.delete("lifecycle-delete", ids(resp.Machines))
	slices.Sort(del.Deleted)
	if diff := cmp.Diff(ids(resp.Machines), del.Deleted); diff != "" {
		t.Errorf("Delete: deleted ids (-want +got):\n%s", diff)
	}
	for _, m := range e.list("") {
		if slices.Contains(ids(resp.Machines), m.ID) {
			t.Errorf("List still shows deleted machine %s (%s, %s)", m.Name, m.ID, m.State)
		}
	}
}

func (s *suite) idempotentCreate(t *testing.T, e *env) {
	ms := e.machines(2)
	first := e.create("retry", ms)
	second := e.create("retry", ms)
	if diff := cmp.Diff(ids(first.Machines), ids(second.Machines)); diff != "" {
		t.Errorf("a retried Create returned other machines (-first +retry):\n%s", diff)
	}
	if n := len(e.list("")); n != len(ms) {
		t.Errorf("after a retried Create, List shows %d machines, want %d", n, len(ms))
	}
}

func (s *suite) retryPartial(t *testing.T, e *env) {
	ms := e.machines(3)
	// As if k2 (or the plugin) died after the first machine was made.
	partial := e.create("partial", ms[:1])
	full := e.create("partial", ms)
	if len(full.Machines) != 3 {
		t.Fatalf("retried Create returned %d machines, want 3", len(full.Machines))
	}
	if got := byName(full.Machines)[ms[0].Name].ID; got != partial.Machines[0].ID {
		t.Errorf("retried Create replaced machine %s: id %s, want %s", ms[0].Name, got, partial.Machines[0].ID)
	}
	if n := len(e.list("")); n != 3 {
		t.Errorf("after the retry, List shows %d machines, want 3", n)
	}
}

func (s *suite) idempotentDelete(t *testing.T, e *env) {
	made := e.create("del", e.machines(1))
	e.delete("del", ids(made.Machines))
	again := e.delete("del", ids(made.Machines))
	if !cmp.Equal(again.Deleted, ids(made.Machines)) {
		t.Errorf("Delete of a machine already gone: deleted %v, want %v", again.Deleted, ids(made.Machines))
	}
	e.delete("del-unknown", []string{"providertest-no-such-machine"})
}

func (s *suite) concurrentCreates(t *testing.T, e *env) {
	ms := e.machines(4)
	errs := make(chan error, len(ms))
	for i, m := range ms {
		go func() {
			ctx, cancel := e.ctx()
			defer cancel()
			resp, err := e.p.Create(ctx, &sdk.CreateRequest{RequestID: fmt.Sprintf("par-%d", i), Config: e.cfg, Machines: []sdk.MachineRequest{m}, Bootstrap: e.boot})
			if err == nil && resp.Diagnostics.HasErrors() {
				err = resp.Diagnostics.Err()
			}
			errs <- err
		}()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Create: %v", err)
		}
	}
	if n := len(e.list("")); n != len(ms) {
		t.Errorf("after %d concurrent Creates, List shows %d machines", len(ms), n)
	}
}

func (s *suite) cancellation(t *testing.T, e *env) {
	ms := e.machines(2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	resp, err := e.p.Create(ctx, &sdk.CreateRequest{RequestID: "cancelled", Config: e.cfg, Machines: ms, Bootstrap: e.boot})
	if err == nil && !resp.Diagnostics.HasErrors() {
		t.Logf("Create with a cancelled ctx succeeded (allowed: it may have finished first)")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Create with a cancelled ctx took %s; honour ctx", d)
	}
	// A Create cancelled while running must return promptly and leave
	// nothing a retry cannot finish and a Delete cannot clean.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, _ = e.p.Create(ctx, &sdk.CreateRequest{RequestID: "cancel-mid", Config: e.cfg, Machines: ms, Bootstrap: e.boot})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Create whose ctx ended after 20ms took %s to return; honour ctx", d)
	}
	done := e.create("cancel-mid", ms)
	if len(done.Machines) != len(ms) {
		t.Errorf("retry after a cancelled Create returned %d machines, want %d", len(done.Machines), len(ms))
	}
	if n := len(e.list("")); n != len(ms) {
		t.Errorf("after a cancelled Create and its retry, List shows %d machines, want %d", n, len(ms))
	}
}

func (s *suite) badRequests(t *testing.T, e *env) {
	caps := e.desc.Capabilities
	type bad struct {
		name   string
		mutate func(ms []sdk.MachineRequest, b *sdk.Bootstrap) []sdk.MachineRequest
		path   string
	}
	cases := []bad{
		{"UnadvertisedArch", func(ms []sdk.MachineRequest, _ *sdk.Bootstrap) []sdk.MachineRequest {
			ms[0].Arch = "k2-no-such-arch"
			return ms
		}, "machines[0].arch"},
		{"UnadvertisedClass", func(ms []sdk.MachineRequest, _ *sdk.Bootstrap) []sdk.MachineRequest {
			ms[0].Class = "k2-no-such-class"
			return ms
		}, "machines[0].class"},
		{"EmptyName", func(ms []sdk.MachineRequest, _ *sdk.Bootstrap) []sdk.MachineRequest {
			ms[1].Name = ""
			return ms
		}, "machines[1].name"},
		{"DuplicateName", func(ms []sdk.MachineRequest, _ *sdk.Bootstrap) []sdk.MachineRequest {
			ms[1].Name = ms[0].Name
			return ms
		}, "machines[1].name"},
		{"UnadvertisedBootstrap", func(ms []sdk.MachineRequest, b *sdk.Bootstrap) []sdk.MachineRequest {
			b.Method = "k2-no-such-method"
			return ms
		}, "bootstrap.method"},
	}
	// An OS the provider's machines do not boot (OS talos on a provider
	// of k2 OS alone): refused, not booted as k2 OS.
	unoffered := sdk.OSTalos
	if slices.Contains(caps.OSes(), unoffered) {
		unoffered = "k2-no-such-os"
	}
	cases = append(cases, bad{"UnadvertisedOS", func(ms []sdk.MachineRequest, b *sdk.Bootstrap) []sdk.MachineRequest {
		b.OS, b.OSVersion, b.KubernetesVersion = unoffered, "v1.10.6", "v1.32.3"
		return ms
	}, "bootstrap.os"})
	if !caps.CustomSizes {
		cases = append(cases, bad{"CustomSizeNotOffered", func(ms []sdk.MachineRequest, _ *sdk.Bootstrap) []sdk.MachineRequest {
			ms[0].CPU, ms[0].MemoryBytes = 3, 3<<30
			return ms
		}, "machines[0]"})
	}
	if caps.MaxMachines > 0 && caps.MaxMachines < 50 {
		cases = append(cases, bad{"TooManyMachines", func(_ []sdk.MachineRequest, _ *sdk.Bootstrap) []sdk.MachineRequest {
			return e.machines(int(caps.MaxMachines) + 1)
		}, "machines"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := e.boot
			ms := tc.mutate(e.machines(2), &b)
			ctx, cancel := e.ctx()
			defer cancel()
			v, err := e.p.Validate(ctx, &sdk.ValidateRequest{Config: e.cfg, Machines: ms, Bootstrap: &b})
			switch {
			case isUnimplemented(err):
			case err != nil:
				t.Errorf("Validate: a bad request must give diagnostics, not a Go error: %v", err)
			case !v.Diagnostics.HasErrors():
				t.Errorf("Validate accepted a bad request (%s)", tc.name)
			case !hasPath(v.Diagnostics, tc.path):
				t.Errorf("Validate: no diagnostic with path %q; got %v", tc.path, v.Diagnostics)
			}
			reqID := "bad-" + tc.name
			resp, err := e.p.Create(ctx, &sdk.CreateRequest{RequestID: reqID, Config: e.cfg, Machines: ms, Bootstrap: b})
			switch {
			case err != nil:
				t.Errorf("Create: a bad request must give diagnostics, not a Go error: %v", err)
			case !resp.Diagnostics.HasErrors():
				t.Errorf("Create accepted a bad request (%s)", tc.name)
			case !hasPath(resp.Diagnostics, tc.path):
				t.Errorf("Create: no diagnostic with path %q; got %v", tc.path, resp.Diagnostics)
			}
			if l := e.list(reqID); len(l) != 0 {
				t.Errorf("a refused Create made %d machines", len(l))
			}
		})
	}
}

func hasPath(ds sdk.Diagnostics, path string) bool {
	for _, d := range ds {
		if d.Severity != sdk.SeverityWarning && (d.Path == path || strings.HasPrefix(d.Path, path+".")) {
			return true
		}
	}
	return false
}

func (s *suite) optionalCalls(t *testing.T, e *env) {
	caps := e.desc.Capabilities
	made := e.create("optional", e.machines(1))
	id := made.Machines[0].ID
	ctx, cancel := e.ctx()
	defer cancel()
	_, perr := e.p.Power(ctx, &sdk.PowerRequest{Config: e.cfg, MachineID: id, Action: sdk.PowerOff})
	if caps.Power && perr != nil {
		t.Errorf("Power is advertised but failed: %v", perr)
	}
	if !caps.Power && !isUnimplemented(perr) {
		t.Errorf("Power is not advertised but did not return ErrUnimplemented: %v", perr)
	}
	if caps.Power {
		if _, err := e.p.Power(ctx, &sdk.PowerRequest{Config: e.cfg, MachineID: id, Action: sdk.PowerOn}); err != nil {
			t.Errorf("Power on: %v", err)
		}
	}
	var out strings.Builder
	cerr := e.p.Console(ctx, &sdk.ConsoleRequest{Config: e.cfg, MachineID: id, Output: &out})
	if caps.Console && cerr != nil {
		t.Errorf("Console is advertised but failed: %v", cerr)
	}
	if !caps.Console && !isUnimplemented(cerr) {
		t.Errorf("Console is not advertised but did not return ErrUnimplemented: %v", cerr)
	}
}
