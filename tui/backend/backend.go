// Package backend is the installer's side of k2: it opens the state
// database and the artifact store, discovers and launches provider
// plugins, plans, validates and deploys through provision/engine, exactly
// as the k2 commands do. What would pull the control plane into the
// installer (the cluster steps, k2 status) is given by the caller.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// Options configure a Backend. Home and Steps are required.
type Options struct {
	// Home is $K2_HOME.
	Home string
	// Discover and Launch find and start provider plugins; Launch.Logger
	// is replaced by the backend's logger.
	Discover host.DiscoverOptions
	Launch   host.LaunchOptions
	// Remote configures registry access for references that name one.
	Remote artifact.RemoteOptions
	// Steps returns the deploy steps after the plan: cluster.Steps.
	Steps func(StepsRequest) func(*engine.State) []engine.Step
	// Status reports an environment after its deploy: cluster.GetStatus
	// and the text `k2 status` prints. Nil reports nothing.
	Status func(ctx context.Context, s *state.Store, env string) (*Status, error)
	// Keys verify artifacts' signatures; without keys the installer only
	// says whether an artifact is signed.
	Keys []*sign.PublicKey
	// Gates refuses a deploy of a to env (with op) that env's signature
	// or approval gates, or Keys, do not let in: promote.Gates, given by
	// the caller. Nil lets everything in.
	Gates func(ctx context.Context, s *state.Store, env *state.Environment, a *artifact.Artifact, op state.Op) error
	// Level is the lowest level the log pane shows (default info).
	Level slog.Level
	// Command is recorded as the holder of the environment's lock.
	Command string
}

// StepsRequest is what the deploy steps are made for.
type StepsRequest struct {
	// Op is the deployment's: an upgrade (resumed) applies only the
	// layers that changed since the environment's last deploy.
	Op             state.Op
	Provider       engine.Provider
	ProviderConfig sdk.Config
	Artifact       *artifact.Artifact
	Logger         *slog.Logger
}

// Status is an environment as the done screen shows it.
type Status struct {
	Kubeconfig string
	Healthy    bool
	Nodes      int
	NodesReady int
	Apps       []App
	// Text is what `k2 status ENV` prints.
	Text string
}

// App is one App of a cluster.
type App struct {
	Namespace, Name, URL string
	Ready                bool
}

// Backend does the installer's work. Its methods block; pages call them
// from tea.Cmds. It is safe for concurrent use.
type Backend struct {
	opts Options
	// Log holds the log records of plugins, builds and deploys for the
	// log pane.
	Log    *LogBuffer
	logger *slog.Logger

	mu      sync.Mutex
	state   *state.Store
	store   *artifact.Store
	clients map[string]*host.Client
}

// New returns a Backend; Close it.
func New(o Options) *Backend {
	lb := NewLogBuffer(500)
	b := &Backend{opts: o, Log: lb, logger: slog.New(lb.Handler(o.Level)), clients: map[string]*host.Client{}}
	b.opts.Launch.Logger = b.logger
	b.opts.Remote.Logger = b.logger
	return b
}

// Logger is where the backend's and the plugins' records go.
func (b *Backend) Logger() *slog.Logger { return b.logger }

// Home is $K2_HOME.
func (b *Backend) Home() string { return b.opts.Home }

// Close stops the launched plugins and closes the state database.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.clients {
		c.Close()
	}
	b.clients = map[string]*host.Client{}
	if b.state != nil {
		b.state.Close()
		b.state = nil
	}
}

// State opens the state database once.
func (b *Backend) State(ctx context.Context) (*state.Store, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == nil {
		s, err := state.Open(ctx, b.opts.Home, state.WithLogger(b.logger))
		if err != nil {
			return nil, engine.UserError(err)
		}
		b.state = s
	}
	return b.state, nil
}

func (b *Backend) artifacts(ctx context.Context) (*artifact.Store, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store == nil {
		s, err := artifact.OpenStore(ctx, artifact.StoreDir(b.opts.Home))
		if err != nil {
			return nil, err
		}
		s.Logger = b.logger
		b.store = s
	}
	return b.store, nil
}

// ListArtifacts lists the local store.
func (b *Backend) ListArtifacts(ctx context.Context) ([]artifact.Image, error) {
	s, err := b.artifacts(ctx)
	if err != nil {
		return nil, err
	}
	return s.List(ctx)
}

// OpenArtifact opens ref from the store, pulling it first when it is not
// there and names a registry.
func (b *Backend) OpenArtifact(ctx context.Context, ref string) (*artifact.Artifact, error) {
	if _, err := artifact.NormalizeRef(ref); err != nil {
		return nil, err
	}
	s, err := b.artifacts(ctx)
	if err != nil {
		return nil, err
	}
	a, err := artifact.Open(ctx, s, ref, true, b.opts.Remote)
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, usererr.Wrap(usererr.KindUsage, err, "pick one from the store, or build one from a K8sfile directory")
	}
	return a, err
}

// Build builds the K8sfile in dir into the store as tag, as `k2 build -t
// tag dir` does; the builder's progress goes to the log.
func (b *Backend) Build(ctx context.Context, dir, tag string) (*artifact.BuildResult, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, usererr.Usage("%s is not a directory", dir)
	}
	s, err := b.artifacts(ctx)
	if err != nil {
		return nil, err
	}
	repos, err := artifact.LoadRepos(artifact.ReposFile(b.opts.Home))
	if err != nil {
		return nil, err
	}
	b.logger.Info("building", "dir", dir, "tag", tag)
	res, warns, err := artifact.BuildFile(ctx, filepath.Join(dir, k8sfile.DefaultName), artifact.BuildOptions{
		Store: s, Context: os.DirFS(dir), Ref: tag, Repos: repos, Remote: b.opts.Remote, Logger: b.logger,
	})
	for _, w := range warns {
		b.logger.Warn(w)
	}
	return res, err
}

// Signature reports a's signatures (sign.Status), checked with the keys
// given.
func (b *Backend) Signature(ctx context.Context, a *artifact.Artifact) sign.Summary {
	s, err := b.artifacts(ctx)
	if err != nil {
		return sign.Summary{State: sign.StateUnknown, Detail: err.Error()}
	}
	return sign.Status(ctx, s, a.Ref, b.opts.Keys, b.opts.Remote)
}

// EnvSummary is an environment with its last deployment.
type EnvSummary struct {
	state.Environment
	Last *state.Deployment
}

// Environments lists the environments with their last deployments.
func (b *Backend) Environments(ctx context.Context) ([]EnvSummary, error) {
	s, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	envs, err := s.ListEnvs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]EnvSummary, 0, len(envs))
	for _, e := range envs {
		es := EnvSummary{Environment: e}
		if d, err := s.LatestDeployment(ctx, e.Name); err == nil {
			es.Last = d
		}
		out = append(out, es)
	}
	return out, nil
}

// Providers discovers the provider plugins and asks each to describe
// itself; one that fails carries its error in Info.Error.
func (b *Backend) Providers(ctx context.Context) ([]host.Info, error) {
	infos, err := host.Inspect(ctx, b.opts.Discover, b.opts.Launch)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindProvider, err, "")
	}
	return infos, nil
}

// Provider launches the provider plugin name once and keeps it running
// until Close.
func (b *Backend) Provider(ctx context.Context, name string) (*host.Client, error) {
	b.mu.Lock()
	c := b.clients[name]
	b.mu.Unlock()
	if c != nil {
		return c, nil
	}
	p, err := host.Find(b.opts.Discover, name)
	if err != nil {
		return nil, err
	}
	c, err = host.Launch(ctx, p, b.opts.Launch)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.clients[name]; old != nil {
		c.Close()
		return old, nil
	}
	b.clients[name] = c
	return c, nil
}

// CheckProvider tells whether the provider described by info can make the
// machines of a for env (an unsaved one for a new environment): nil, or
// why not (engine.CheckCapabilities).
func CheckProvider(env *state.Environment, a *artifact.Artifact, info host.Info) error {
	if info.Error != "" {
		return errors.New(info.Error)
	}
	if info.Capabilities == nil {
		return fmt.Errorf("provider %s described no capabilities", info.Name)
	}
	e := *env
	e.Provider = info.Name
	return engine.CheckCapabilities(engine.PlanOptions{Env: &e, Config: a.Config, Capabilities: info.Capabilities})
}
