// Package providertest is the conformance kit for k2 provider plugins. A
// plugin author adds one test:
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, func() sdk.Provider { return &myProvider{} })
//	}
//
// Run serves the provider through go-plugin's in-process gRPC test mode, so
// every call crosses the real wire (protobuf conversion, status codes,
// streaming), and checks the contract documented in package sdk: Describe
// is sane; Create/List/Delete work; Create and Delete are idempotent by
// request id, including a retry after a partial Create; cancellation is
// honoured; bad requests come back as diagnostics with a path and make no
// machine; and the provider refuses what it does not advertise (capability
// honesty: architectures, classes, sizes, bootstrap methods, machine count,
// Power and Console); and concurrent Creates of different requests (k2
// creates machines in parallel) all succeed.
//
// Bootstrap: the kit runs without a k2 control plane, so it hands the
// provider a payload for the first bootstrap method it advertises that the
// kit can satisfy harmlessly: for "exec", the command `sleep 600` (a real
// long-running process the provider must start, track and stop, in place
// of `k2 agent`); for "user-data", an empty #cloud-config document; for
// "network-boot", nothing. Override it with WithBootstrap.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"k2.dev/k2/providers/sdk"
)

// Option adjusts Run.
type Option func(*options)

type options struct {
	config    func(t *testing.T) sdk.Config
	bootstrap *sdk.Bootstrap
	timeout   time.Duration
}

// WithConfig supplies the provider config for each subtest (called once
// per subtest, so it can use t.TempDir for a fresh state directory).
func WithConfig(f func(t *testing.T) sdk.Config) Option {
	return func(o *options) { o.config = f }
}

// WithBootstrap replaces the kit's harmless bootstrap payload.
func WithBootstrap(b sdk.Bootstrap) Option {
	return func(o *options) { o.bootstrap = &b }
}

// WithTimeout bounds each call the kit makes (default 60s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// Run checks newProvider against the provider contract, over go-plugin's
// in-process gRPC connection.
func Run(t *testing.T, newProvider func() sdk.Provider, opts ...Option) {
	t.Helper()
	RunClient(t, func(t *testing.T) sdk.Provider { return Connect(t, newProvider) }, opts...)
}

// Connect serves newProvider in-process through go-plugin's gRPC test mode
// and returns k2's client side of it; both are closed at the end of t.
func Connect(t testing.TB, newProvider func() sdk.Provider) sdk.Provider {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(newProvider))
	t.Cleanup(func() {
		// The server first: the client's Close asks the server to stop
		// itself, which would race with a Stop of ours.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("dispensing provider: %v", err)
	}
	return raw.(sdk.Provider)
}

// RunClient is Run for a provider reached some other way, such as a plugin
// executable launched with providers/host: connect is called once per
// subtest.
func RunClient(t *testing.T, connect func(t *testing.T) sdk.Provider, opts ...Option) {
	t.Helper()
	o := options{timeout: 60 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	s := &suite{o: o, connect: connect}
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *env)
	}{
		{"Describe", s.describe},
		{"ValidateGood", s.validateGood},
		{"Lifecycle", s.lifecycle},
		{"IdempotentCreate", s.idempotentCreate},
		{"RetryAfterPartialCreate", s.retryPartial},
		{"IdempotentDelete", s.idempotentDelete},
		{"ConcurrentCreates", s.concurrentCreates},
		{"Cancellation", s.cancellation},
		{"BadRequests", s.badRequests},
		{"OptionalCalls", s.optionalCalls},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, s.setup(t)) })
	}
}

type suite struct {
	o       options
	connect func(t *testing.T) sdk.Provider
}

// env is one subtest's provider, config and description.
type env struct {
	p    sdk.Provider
	cfg  sdk.Config
	desc *sdk.DescribeResponse
	boot sdk.Bootstrap
	s    *suite
	t    *testing.T
}

func (s *suite) setup(t *testing.T) *env {
	e := &env{p: s.connect(t), s: s, t: t}
	if s.o.config != nil {
		e.cfg = s.o.config(t)
	}
	ctx, cancel := e.ctx()
	defer cancel()
	desc, err := e.p.Describe(ctx, &sdk.DescribeRequest{Host: sdk.HostCapabilities{
		BootstrapMethods: []string{sdk.BootstrapExec, sdk.BootstrapUserData, sdk.BootstrapNetworkBoot},
		ProgressEvents:   true,
	}})
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	e.desc = desc
	if s.o.bootstrap != nil {
		e.boot = *s.o.bootstrap
	} else {
		e.boot = harmlessBootstrap(desc.Capabilities)
	}
	t.Cleanup(e.deleteAll)
	return e
}

func harmlessBootstrap(c sdk.Capabilities) sdk.Bootstrap {
	for _, m := range c.BootstrapMethods {
		switch m {
		case sdk.BootstrapExec:
			return sdk.Bootstrap{Method: m, Command: []string{"sleep", "600"}, Env: map[string]string{"K2_PROVIDERTEST": "1"}}
		case sdk.BootstrapUserData:
			return sdk.Bootstrap{Method: m, UserData: []byte("#cloud-config\n{}\n")}
		case sdk.BootstrapNetworkBoot:
			return sdk.Bootstrap{Method: m}
		}
	}
	return sdk.Bootstrap{}
}

func (e *env) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.s.o.timeout)
}

// machines returns n valid machine requests with names unique to the test.
func (e *env) machines(n int) []sdk.MachineRequest {
	caps := e.desc.Capabilities
	var out []sdk.MachineRequest
	for i := range n {
		m := sdk.MachineRequest{Name: fmt.Sprintf("pt-%s-%d", shortID(e.t.Name()), i), Role: "worker", Pool: "worker"}
		if len(caps.Architectures) > 0 {
			m.Arch = caps.Architectures[0]
		}
		if len(caps.Classes) > 0 {
			m.Class = caps.Classes[0].Name
		}
		out = append(out, m)
	}
	return out
}

func (e *env) create(reqID string, ms []sdk.MachineRequest) *sdk.CreateResponse {
	e.t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.p.Create(ctx, &sdk.CreateRequest{RequestID: reqID, Config: e.cfg, Machines: ms, Bootstrap: e.boot})
	if err != nil {
		e.t.Fatalf("Create(%s): %v", reqID, err)
	}
	if resp.Diagnostics.HasErrors() {
		e.t.Fatalf("Create(%s) refused a valid request: %v", reqID, resp.Diagnostics.Err())
	}
	return resp
}

func (e *env) list(reqID string) []sdk.Machine {
	e.t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.p.List(ctx, &sdk.ListRequest{Config: e.cfg, RequestID: reqID})
	if err != nil {
		e.t.Fatalf("List: %v", err)
	}
	return resp.Machines
}

func (e *env) delete(reqID string, ids []string) *sdk.DeleteResponse {
	e.t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.p.Delete(ctx, &sdk.DeleteRequest{RequestID: reqID, Config: e.cfg, MachineIDs: ids})
	if err != nil {
		e.t.Fatalf("Delete(%v): %v", ids, err)
	}
	if resp.Diagnostics.HasErrors() {
		e.t.Fatalf("Delete(%v): %v", ids, resp.Diagnostics.Err())
	}
	return resp
}

// deleteAll removes every machine the test left behind.
func (e *env) deleteAll() {
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.p.List(ctx, &sdk.ListRequest{Config: e.cfg})
	if err != nil {
		return
	}
	var ids []string
	for _, m := range resp.Machines {
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		_, _ = e.p.Delete(ctx, &sdk.DeleteRequest{RequestID: "providertest-cleanup", Config: e.cfg, MachineIDs: ids})
	}
}

func ids(ms []sdk.Machine) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

func byName(ms []sdk.Machine) map[string]sdk.Machine {
	out := map[string]sdk.Machine{}
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}

// shortID makes a short stable token from a test name for machine names.
func shortID(s string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return fmt.Sprintf("%06x", h&0xffffff)
}

func isUnimplemented(err error) bool { return errors.Is(err, sdk.ErrUnimplemented) }
