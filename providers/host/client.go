package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
)

// Timeouts bound each call; a zero field takes its default. A call's ctx
// deadline still applies when it is shorter.
type Timeouts struct {
	Start    time.Duration // launch and handshake, default 30s
	Describe time.Duration // default 10s
	Validate time.Duration // default 30s
	Create   time.Duration // default 30m
	List     time.Duration // default 1m
	Delete   time.Duration // default 10m
	Power    time.Duration // default 5m
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Start, 30*time.Second)
	def(&t.Describe, 10*time.Second)
	def(&t.Validate, 30*time.Second)
	def(&t.Create, 30*time.Minute)
	def(&t.List, time.Minute)
	def(&t.Delete, 10*time.Minute)
	def(&t.Power, 5*time.Minute)
	return t
}

// LaunchOptions configure Launch; the zero value is usable.
type LaunchOptions struct {
	// Logger receives the plugin's stderr, one record per line, with
	// provider=<name>. Nil discards it.
	Logger *slog.Logger
	// Host is what k2 tells the plugin it can do in Describe.
	Host sdk.HostCapabilities
	// Timeouts per call.
	Timeouts Timeouts
	// Env is added to the plugin's environment.
	Env []string
}

// DefaultHostCapabilities is what the k2 binary can do for providers.
var DefaultHostCapabilities = sdk.HostCapabilities{
	BootstrapMethods: []string{sdk.BootstrapExec, sdk.BootstrapUserData},
	ProgressEvents:   true,
	ConsoleStreaming: true,
}

// Client is a launched provider plugin. It implements sdk.Provider; every
// error it returns is a *usererr.Error of KindProvider wrapping an *Error.
type Client struct {
	sdk.UnimplementedProvider
	name     string
	plugin   Plugin
	client   *plugin.Client
	prov     sdk.Provider
	opts     LaunchOptions
	timeouts Timeouts

	mu   sync.Mutex
	desc *sdk.DescribeResponse
}

var _ sdk.Provider = (*Client)(nil)

// Error is a provider call that failed: the plugin crashed, hung, refused
// or returned an error.
type Error struct {
	Provider string
	Op       string // "launch", "Describe", "Create"...
	// Exited is true when the plugin process died during the call.
	Exited bool
	// TimedOut is true when the call hit its deadline.
	TimedOut bool
	Err      error
}

func (e *Error) Error() string {
	switch {
	case e.Op == "launch":
		return fmt.Sprintf("provider %q did not start: %v", e.Provider, e.Err)
	case e.Exited:
		return fmt.Sprintf("provider %q crashed during %s: %v", e.Provider, e.Op, e.Err)
	case e.TimedOut:
		return fmt.Sprintf("provider %q did not finish %s in time (hung?): %v", e.Provider, e.Op, e.Err)
	}
	return fmt.Sprintf("provider %q: %s: %v", e.Provider, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Launch starts plugin p and completes the go-plugin handshake. Close the
// Client when done. With $K2_PROVIDER_REATTACH naming p, it attaches to the
// plugin running in debug mode instead (see sdk.DebugEnv).
func Launch(ctx context.Context, p Plugin, opts LaunchOptions) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Host.BootstrapMethods == nil {
		opts.Host = DefaultHostCapabilities
	}
	c := &Client{name: p.Name, plugin: p, opts: opts, timeouts: opts.Timeouts.withDefaults()}
	relay := &lineLogger{logger: opts.Logger.With("provider", p.Name)}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     c.timeouts.Start,
		Stderr:           relay,
		SyncStderr:       relay,
		SyncStdout:       relay,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard}),
		GRPCDialOptions:  sdk.GRPCDialOptions(),
	}
	if rc, ok := reattachFor(p.Name); ok {
		cfg.Reattach = rc
	} else {
		args := p.Args()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), opts.Env...)
		// A plugin must not outlive k2: killed with SIGKILL, k2 cannot
		// close it, and an orphan could go on with a Create that the
		// resumed deploy is about to retry.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cfg.Cmd = cmd
	}
	c.client = plugin.NewClient(cfg)
	done := make(chan error, 1)
	go func() {
		rpc, err := c.client.Client()
		if err == nil {
			var raw any
			raw, err = rpc.Dispense(sdk.PluginName)
			if err == nil {
				c.prov = raw.(sdk.Provider)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			c.client.Kill()
			return nil, c.wrap(ctx, "launch", fmt.Errorf("starting %s: %w", p.Path, err))
		}
	case <-ctx.Done():
		c.client.Kill()
		return nil, c.wrap(ctx, "launch", ctx.Err())
	}
	return c, nil
}

// reattachFor reads $K2_PROVIDER_REATTACH for a provider in debug mode.
func reattachFor(name string) (*plugin.ReattachConfig, bool) {
	env := os.Getenv(sdk.ReattachEnv)
	if env == "" {
		return nil, false
	}
	var m map[string]sdk.ReattachConfig
	if json.Unmarshal([]byte(env), &m) != nil {
		return nil, false
	}
	rc, ok := m[name]
	if !ok {
		return nil, false
	}
	var addr net.Addr
	var err error
	if rc.Network == "unix" {
		addr, err = net.ResolveUnixAddr("unix", rc.Addr)
	} else {
		addr, err = net.ResolveTCPAddr("tcp", rc.Addr)
	}
	if err != nil {
		return nil, false
	}
	return &plugin.ReattachConfig{Protocol: plugin.ProtocolGRPC, ProtocolVersion: int(sdk.Handshake.ProtocolVersion), Addr: addr, Pid: rc.Pid, Test: true}, true
}

// Name is the provider's name as discovered.
func (c *Client) Name() string { return c.name }

// Plugin is what was launched.
func (c *Client) Plugin() Plugin { return c.plugin }

// Pid is the plugin process's id (0 if unknown).
func (c *Client) Pid() int {
	if rc := c.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Exited reports whether the plugin process has ended.
func (c *Client) Exited() bool { return c.client.Exited() }

// Close stops the plugin process.
func (c *Client) Close() error {
	c.client.Kill()
	return nil
}

// wrap turns err from op into a provider error naming the plugin.
func (c *Client) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Provider: c.name, Op: op, Err: err}
	// The process may take a moment to be reaped after the connection drops.
	var te *sdk.TransportError
	if errors.As(err, &te) || op == "launch" {
		for i := 0; i < 50 && !c.client.Exited(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	hint := fmt.Sprintf("see the log lines with provider=%s", c.name)
	switch {
	case op == "launch":
		e.Exited = c.client.Exited()
		hint = fmt.Sprintf("is %s a k2 provider plugin (built with providers/sdk)? its output is in the log lines with provider=%s", strings.Join(c.plugin.Args(), " "), c.name)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return usererr.Wrap(usererr.KindInterrupted, e, "")
		}
	case c.client.Exited():
		e.Exited = true
		hint = fmt.Sprintf("the plugin process (%s) exited; see the log lines with provider=%s above; retrying with the same request id is safe", strings.Join(c.plugin.Args(), " "), c.name)
	case errors.Is(err, context.DeadlineExceeded):
		e.TimedOut = true
		hint = "the plugin did not answer before its deadline; retrying with the same request id is safe"
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return usererr.Wrap(usererr.KindInterrupted, e, "")
	case errors.Is(err, sdk.ErrUnimplemented):
		hint = "this provider does not offer that call"
	}
	return usererr.Wrap(usererr.KindProvider, e, hint)
}

// Describe returns the provider's name, capabilities and config schema
// (asked once, then cached).
func (c *Client) Describe(ctx context.Context, _ *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.desc != nil {
		return c.desc, nil
	}
	ctx2, cancel := context.WithTimeout(ctx, c.timeouts.Describe)
	defer cancel()
	resp, err := c.prov.Describe(ctx2, &sdk.DescribeRequest{Host: c.opts.Host})
	if err != nil {
		return nil, c.wrap(ctx, "Describe", err)
	}
	c.desc = resp
	return resp, nil
}

// Validate checks req.Config against the described schema, then asks the
// plugin. A plugin without Validate counts as having no complaints.
func (c *Client) Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	desc, err := c.Describe(ctx, nil)
	if err != nil {
		return nil, err
	}
	ds := sdk.CheckConfig(desc.ConfigSchema, req.Config)
	if ds.HasErrors() {
		return &sdk.ValidateResponse{Diagnostics: ds}, nil
	}
	ctx2, cancel := context.WithTimeout(ctx, c.timeouts.Validate)
	defer cancel()
	resp, err := c.prov.Validate(ctx2, req)
	if errors.Is(err, sdk.ErrUnimplemented) {
		return &sdk.ValidateResponse{Diagnostics: ds}, nil
	}
	if err != nil {
		return nil, c.wrap(ctx, "Validate", err)
	}
	resp.Diagnostics = append(ds, resp.Diagnostics...)
	return resp, nil
}

// Create asks for machines; req.OnProgress receives the plugin's progress.
func (c *Client) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	ctx2, cancel := context.WithTimeout(ctx, c.timeouts.Create)
	defer cancel()
	resp, err := c.prov.Create(ctx2, req)
	return resp, c.wrap(ctx, "Create", err)
}

// List returns the machines the provider manages.
func (c *Client) List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	ctx2, cancel := context.WithTimeout(ctx, c.timeouts.List)
	defer cancel()
	resp, err := c.prov.List(ctx2, req)
	return resp, c.wrap(ctx, "List", err)
}

// Delete removes machines.
func (c *Client) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	ctx2, cancel := context.WithTimeout(ctx, c.timeouts.Delete)
	defer cancel()
	resp, err := c.prov.Delete(ctx2, req)
	return resp, c.wrap(ctx, "Delete", err)
}

// Power switches a machine on or off.
func (c *Client) Power(ctx context.Context, req *sdk.PowerRequest) (*sdk.PowerResponse, error) {
	ctx2, cancel := context.WithTimeout(ctx, c.timeouts.Power)
	defer cancel()
	resp, err := c.prov.Power(ctx2, req)
	return resp, c.wrap(ctx, "Power", err)
}

// Console streams a machine's console into req.Output until ctx ends (with
// Follow) or the plugin has sent everything.
func (c *Client) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	return c.wrap(ctx, "Console", c.prov.Console(ctx, req))
}
