package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "k2.dev/k2/providers/sdk/internal/proto"
)

// Handshake is the go-plugin handshake between k2 and provider plugins. The
// cookie only keeps people from running a plugin by hand; the protocol
// version stays 1 forever: features are negotiated as capabilities.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "K2_PROVIDER_PLUGIN",
	MagicCookieValue: "7b3c0e5a2f9d4e1b8c6a0d2e4f1a3b5c",
}

// PluginName is the name the provider is dispensed under in go-plugin.
const PluginName = "provider"

// MaxMessageBytes bounds one gRPC message either way (a machine list, a
// user-data document).
const MaxMessageBytes = 64 << 20

// DebugEnv is the variable that, set to 1 in a plugin's environment, makes Serve run in
// go-plugin's reattach mode: the plugin runs on its own (under a debugger,
// say) and prints a ReattachEnv line; export it and k2 attaches to that
// process instead of starting the plugin.
const DebugEnv = "K2_PROVIDER_DEBUG"

// ReattachEnv holds a JSON object {"<provider name>": ReattachConfig} that
// k2 uses to attach to providers already running in debug mode.
const ReattachEnv = "K2_PROVIDER_REATTACH"

// stderr is the process's real stderr, captured before go-plugin replaces
// os.Stderr; k2 relays every line written to it into its log.
var stderr = os.Stderr

var logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))

// Logger returns the plugin's logger. Its records show up in k2's log with
// provider=<name>. Never write to stdout in a plugin: go-plugin owns it.
func Logger() *slog.Logger { return logger }

// GRPCPlugin is the go-plugin glue for a provider. k2 and providertest use
// it; plugin authors only call Serve.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// New makes the provider served (server side only).
	New func() Provider
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the provider on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServer(s, &grpcServer{impl: p.New()})
	return nil
}

// GRPCClient returns a Provider that calls the plugin over c.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{c: pb.NewProviderClient(c)}, nil
}

// PluginSet is the go-plugin plugin set serving newProvider (nil on the
// client side).
func PluginSet(newProvider func() Provider) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{New: newProvider}}
}

// GRPCServerFactory makes the plugin's gRPC server with k2's message limits.
func GRPCServerFactory(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes))
	return plugin.DefaultGRPCServer(opts)
}

// GRPCDialOptions are the client-side options matching GRPCServerFactory.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes))}
}

// Serve serves the provider made by newProvider and never returns in normal
// mode (go-plugin exits the process when k2 closes the plugin). It is all a
// plugin's main needs.
func Serve(newProvider func() Provider) {
	cfg := &plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(newProvider),
		GRPCServer:      GRPCServerFactory,
		Logger:          hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: stderr, JSONFormat: true}),
	}
	if os.Getenv(DebugEnv) == "1" {
		serveDebug(cfg, newProvider)
		return
	}
	plugin.Serve(cfg)
}

// serveDebug runs the provider in reattach mode until interrupted.
func serveDebug(cfg *plugin.ServeConfig, newProvider func() Provider) {
	ch := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	cfg.Test = &plugin.ServeTestConfig{Context: context.Background(), ReattachConfigCh: ch, CloseCh: closed}
	go plugin.Serve(cfg)
	rc := <-ch
	name := "provider"
	if resp, err := newProvider().Describe(context.Background(), &DescribeRequest{}); err == nil && resp.Name != "" {
		name = resp.Name
	}
	b, _ := json.Marshal(map[string]ReattachConfig{name: reattachFrom(rc)})
	fmt.Fprintf(stderr, "provider %s running in debug mode; in k2's shell:\n  export %s='%s'\n", name, ReattachEnv, b)
	<-closed
}

// ReattachConfig is the JSON form of go-plugin's ReattachConfig.
type ReattachConfig struct {
	Network string `json:"network"`
	Addr    string `json:"addr"`
	Pid     int    `json:"pid"`
}

func reattachFrom(rc *plugin.ReattachConfig) ReattachConfig {
	return ReattachConfig{Network: rc.Addr.Network(), Addr: rc.Addr.String(), Pid: rc.Pid}
}
