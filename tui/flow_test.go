package tui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
	"k2.dev/k2/tui"
	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/pages/deploy"
	"k2.dev/k2/tui/pages/review"
)

// The cluster artifact of the tests: its machines ask for more memory than
// any class of the example provider has, so that one is shown disabled;
// the local provider (custom sizes) can make them.
const k8sfile = `FROM k2/base:v1.37
ARG workers=2
ARG greeting
APP web image=127.0.0.1:5999/web:1 port=8080 replicas=1 env GREETING=${greeting}
MACHINES control-plane=1 worker=${workers} cpu=2 memory=40Gi
`

// harness is one $K2_HOME with a K8sfile directory and the steps a deploy
// runs. The steps stand in for provision/cluster's, which would need the
// control plane: machines come from the real local provider plugin (each a
// `sleep` process), and "layers" applies nothing but journals each layer,
// failing or blocking on the App layer when told to.
type harness struct {
	t     *testing.T
	home  string
	dir   string // the K8sfile directory
	mu    sync.Mutex
	fails int           // how many more times the App layer fails
	block chan struct{} // while not nil and open, the App layer waits
	waits int           // how many times the App layer began to wait
	cfg   sdk.Config    // the provider config the steps were made with
	// refuse, when set, is the gates' refusal (see gates).
	refuse error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, home: t.TempDir()}
	h.dir = filepath.Join(t.TempDir(), "shop")
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "K8sfile"), []byte(k8sfile), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.deleteMachines)
	return h
}

func (h *harness) options() backend.Options {
	return backend.Options{
		Home:     h.home,
		Discover: host.DiscoverOptions{PluginPath: pluginDir, Home: h.home},
		Launch:   host.LaunchOptions{Env: []string{"K2_HOME=" + h.home}},
		Steps:    h.steps,
		Status:   h.status,
		Gates:    h.gates,
		Command:  "k2 install (test)",
	}
}

func (h *harness) model(o tui.Options) (*tui.Model, *backend.Backend) {
	o.Backend = h.options()
	r := lipgloss.NewRenderer(os.Stdout)
	r.SetColorProfile(termenv.Ascii)
	o.Renderer = r
	b := backend.New(o.Backend)
	h.t.Cleanup(b.Close)
	return tui.New(b, o), b
}

func sleeper(_ context.Context, st *engine.State, _ engine.MachinePlan) (sdk.Bootstrap, error) {
	return sdk.Bootstrap{Method: st.Plan.Bootstrap, Command: []string{"sleep", "600"}}, nil
}

func (h *harness) steps(r backend.StepsRequest) func(*engine.State) []engine.Step {
	h.mu.Lock()
	h.cfg = localConfig(h.t, r.ProviderConfig)
	h.mu.Unlock()
	return func(*engine.State) []engine.Step {
		return []engine.Step{
			&engine.MachinesStep{StepName: "control-plane", Roles: []string{engine.RoleControlPlane}, Provider: r.Provider, Config: r.ProviderConfig, Bootstrap: sleeper, Parallel: 1},
			&engine.MachinesStep{StepName: "workers", Roles: []string{engine.RoleWorker}, Provider: r.Provider, Config: r.ProviderConfig, Bootstrap: sleeper},
			&layersStep{h: h, a: r.Artifact},
		}
	}
}

type layersStep struct {
	h *harness
	a *artifact.Artifact
}

func (s *layersStep) Name() string                           { return "layers" }
func (s *layersStep) Cleanup(context.Context, *engine.State) {}
func (s *layersStep) Run(ctx context.Context, st *engine.State) error {
	for _, l := range s.a.Config.Layers {
		_, err := engine.Do(ctx, st, "layer/"+l.Name, func(ctx context.Context) (int, error) {
			st.Progress("", 50, "applying layer %s (%s)", l.Name, l.Kind)
			if l.Kind != artifact.KindApp {
				return len(l.Objects), nil
			}
			s.h.mu.Lock()
			fail, block := s.h.fails > 0, s.h.block
			if fail {
				s.h.fails--
			}
			if !fail && block != nil {
				s.h.waits++
			}
			s.h.mu.Unlock()
			if fail {
				return 0, fmt.Errorf("App default/web: 0 of 1 replicas ready: pod web-1: ImagePullBackOff: 127.0.0.1:5999/web:1: connection refused")
			}
			if block != nil {
				select {
				case <-block:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			return 1, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// gates stands in for promote.Gates (which needs provision/cluster): it
// refuses with h.refuse.
func (h *harness) gates(context.Context, *state.Store, *state.Environment, *artifact.Artifact, state.Op) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refuse
}

// status stands in for cluster.GetStatus (which asks the control plane):
// the machines come from the state store.
func (h *harness) status(ctx context.Context, s *state.Store, env string) (*backend.Status, error) {
	ms, err := s.ListMachines(ctx, env)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s%s\n", "MACHINE", "ROLE")
	for _, m := range ms {
		fmt.Fprintf(&b, "%-22s%s\n", m.Name, m.Role)
	}
	return &backend.Status{
		Kubeconfig: filepath.Join(h.home, "clusters", env, "admin.kubeconfig"), Healthy: true, Nodes: len(ms), NodesReady: len(ms),
		Apps: []backend.App{{Namespace: "default", Name: "web", URL: "http://127.0.0.1:30080", Ready: true}},
		Text: b.String(),
	}, nil
}

// localConfig is cfg without the test plugin's token, as the local
// provider reads it.
func localConfig(t *testing.T, cfg sdk.Config) sdk.Config {
	m := map[string]any{}
	if err := json.Unmarshal(cfg, &m); err != nil {
		t.Fatalf("provider config %s: %v", cfg, err)
	}
	delete(m, "token")
	b, _ := json.Marshal(m)
	return b
}

// deleteMachines deletes what the local provider made (its processes).
func (h *harness) deleteMachines() {
	h.mu.Lock()
	cfg := h.cfg
	h.mu.Unlock()
	if cfg == nil {
		return
	}
	ctx := context.Background()
	p := local.New()
	l, err := p.List(ctx, &sdk.ListRequest{Config: cfg})
	if err != nil {
		return
	}
	var ids []string
	for _, m := range l.Machines {
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids})
	}
}

// machines lists the local provider's machines.
func (h *harness) machines() []string {
	h.t.Helper()
	if h.cfg == nil {
		h.t.Fatal("no machines were asked for: the deploy steps were never made")
	}
	l, err := local.New().List(context.Background(), &sdk.ListRequest{Config: h.cfg})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, m := range l.Machines {
		out = append(out, m.Name)
	}
	return out
}

// token is the secret setting the tests type; it must never be shown.
const token = "s3cr3t-token-for-tests"

// toReview drives a fresh installer from the start to the review page:
// build the K8sfile directory, environment dev on provider local, valid
// settings.
func (h *harness) toReview(d *driver) {
	d.t.Helper()
	h.fillSettings(d)
	d.untilScreen("Review the plan", 30*time.Second)
}

// fillSettings drives a fresh installer through the artifact and
// environment pages and fills in valid settings; the last enter starts
// their check.
func (h *harness) fillSettings(d *driver) {
	d.t.Helper()
	d.untilScreen("Which cluster artifact?", 10*time.Second)
	d.key("down")
	d.typ(h.dir)
	d.key("enter")
	d.untilScreen("Artifact shop:latest", 30*time.Second)
	d.key("enter")
	d.untilScreen("Provider", 30*time.Second)
	d.clear()
	d.typ("dev")
	d.key("enter")
	d.key("enter")
	d.untilScreen("stateDir", 10*time.Second)
	d.typ(filepath.Join(h.home, "machines"))
	d.key("enter")
	d.typ("host")
	d.key("enter") // network
	d.key("enter") // runtime
	d.typ(token)
	d.key("enter") // token
	d.key("enter") // workers
	d.typ("hello")
	d.key("enter") // greeting: the form is done, the provider checks it
}

func step(d *driver) common.Step { return d.m.Step() }

func deployPage(d *driver) *deploy.Page {
	p, _ := d.m.Page(common.StepDeploy).(*deploy.Page)
	return p
}

func phase(d *driver, want deploy.Phase) func() bool {
	return func() bool { p := deployPage(d); return p != nil && p.Phase() == want }
}

// TestInstallFlow walks every page: build a K8sfile directory, a new
// environment (one provider disabled by the plan check), settings that the
// provider's Validate refuses and then accepts, the review, a deploy whose
// App layer fails, its retry, and the done page.
func TestInstallFlow(t *testing.T) {
	h := newHarness(t)
	h.fails = 1
	m, b := h.model(tui.Options{})
	d := drive(t, m)

	d.untilScreen("Which cluster artifact?", 10*time.Second)
	d.golden("1-artifact")
	d.key("down")
	d.typ(h.dir)
	d.golden("2-artifact-build")
	d.key("enter")
	d.untilScreen("Artifact shop:latest", 30*time.Second)
	d.golden("3-artifact-contents")

	d.key("enter")
	d.untilScreen("Provider", 30*time.Second)
	d.clear()
	d.typ("dev")
	d.golden("4-environment")
	d.key("enter")
	if !strings.Contains(d.m.View(), "› local") {
		t.Fatalf("local is not selected:\n%s", d.m.View())
	}
	d.key("down") // example is disabled: the cursor stays on local
	d.key("enter")
	d.untilScreen("stateDir", 10*time.Second)
	if got := d.m.Choices().Provider.Name; got != "local" {
		t.Fatalf("provider %s chosen", got)
	}

	// Settings: three values only the provider can judge, and a required
	// ARG left empty, which the form itself refuses.
	d.typ("relative/dir")
	d.key("enter")
	d.typ("bogus")
	d.key("enter")
	d.key("enter") // runtime: the provider's default
	d.typ("s3cr3t")
	d.key("enter") // token: too short
	d.key("enter") // workers: 2, the default
	d.key("enter") // greeting: required
	d.golden("5-settings-required")
	d.typ("hello")
	d.key("enter")
	d.untilScreen("network \"bogus\"", 30*time.Second)
	if !strings.Contains(d.m.View(), "tokens have 12 or more") {
		t.Errorf("no diagnostic for the token:\n%s", d.m.View())
	}
	d.golden("6-settings-invalid")
	if step(d) != common.StepSettings {
		t.Fatalf("left the settings with invalid values")
	}
	d.clear()
	d.typ(filepath.Join(h.home, "machines"))
	d.key("enter")
	d.clear()
	d.typ("host")
	d.key("enter")
	d.key("enter")
	d.clear()
	d.typ(token)
	d.key("enter")
	d.key("enter")
	d.key("enter")
	d.untilScreen("Review the plan", 30*time.Second)
	d.golden("7-review")
	d.resize(120, 40)
	d.resize(60, 20)
	d.resize(width, height)
	d.golden("7-review") // the same screen again after the resizes
	d.key("?")
	d.golden("7-review-help")
	d.key("x") // any key closes the help
	ch := d.m.Choices()
	if got, want := review.Command(ch), "k2 deploy shop:latest --env dev --provider local --set greeting=hello --dry-run"; got != want {
		t.Errorf("review command %q, want %q", got, want)
	}
	if !strings.Contains(d.m.View(), "Plan for environment dev (provider local)") {
		t.Errorf("the review does not show the plan:\n%s", d.m.View())
	}

	// The deploy: the App layer fails once.
	d.key("enter")
	d.until("the deploy to fail", 60*time.Second, phase(d, deploy.Failed))
	d.golden("8-deploy-failed")
	if got := h.machines(); len(got) != 3 {
		t.Errorf("machines after the failure: %v", got)
	}
	d.key("l")
	if !strings.Contains(d.m.View(), "log (l to hide)") {
		t.Errorf("l shows no log pane:\n%s", d.m.View())
	}
	d.key("l")
	d.key("r")
	d.until("the retry to succeed", 60*time.Second, phase(d, deploy.Succeeded))
	d.golden("9-deploy-succeeded")
	d.key("enter")
	d.untilScreen("Kubeconfig", 10*time.Second)
	d.golden("10-done")
	// The token was typed, validated, stored and logged by the plugin: it
	// was never on screen and the log pane has it masked.
	if d.seen(token) || d.seen("s3cr3t") {
		t.Errorf("the secret token was shown")
	}
	logs, _ := b.Log.Lines()
	masked := false
	for _, l := range logs {
		if strings.Contains(l, "s3cr3t") {
			t.Errorf("the log pane has the token: %s", l)
		}
		masked = masked || (strings.Contains(l, "validating settings") && strings.Contains(l, backend.Masked))
	}
	if !masked {
		t.Errorf("the plugin's log of its settings is not in the log pane, masked:\n%s", strings.Join(logs, "\n"))
	}
	// Nor is it in any file of $K2_HOME (logs, journals, machines) but the
	// state database, which keeps the environment's settings as k2 deploy
	// does.
	filepath.WalkDir(h.home, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasPrefix(e.Name(), state.DBFile) || !e.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte("s3cr3t")) {
			t.Errorf("%s holds the secret token", path)
		}
		return nil
	})
	d.key("q")
	if !d.quit || d.m.Err() != nil {
		t.Fatalf("q on the done page: quit %v, err %v", d.quit, d.m.Err())
	}
	if s := d.m.Summary(); !strings.Contains(s, "kubeconfig: "+filepath.Join(h.home, "clusters/dev/admin.kubeconfig")) {
		t.Errorf("summary:\n%s", s)
	}

	// A second install: the artifact from the store, the existing
	// environment, whose provider is the only one to pick and whose
	// settings are kept.
	m2, _ := h.model(tui.Options{})
	d2 := drive(t, m2)
	d2.untilScreen("shop:latest", 10*time.Second)
	d2.key("down")
	d2.key("down") // shop:latest, after the base k2/base:v1.37 its build stored
	d2.key("enter")
	d2.untilScreen("Artifact shop:latest", 30*time.Second)
	d2.key("enter")
	d2.untilScreen("Provider", 30*time.Second)
	d2.key("down") // environment dev
	d2.golden("15-environment-existing")
	d2.key("enter")
	d2.key("enter")
	d2.untilScreen("keeps its local settings", 10*time.Second)
	if d2.m.Choices().EnvRecord == nil || d2.m.Choices().EnvRecord.Name != "dev" {
		t.Fatalf("the existing environment was not chosen: %+v", d2.m.Choices())
	}
	d2.golden("16-settings-existing")

	// One deployment, retried in place; the environment keeps the settings.
	s, err := state.Open(context.Background(), h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hist, _ := s.History(context.Background(), "dev", 0)
	if len(hist) != 1 || hist[0].Result != state.Succeeded || hist[0].ArtifactRef != "shop:latest" {
		t.Errorf("history: %+v", hist)
	}
	env, _ := s.GetEnv(context.Background(), "dev")
	var cfg map[string]string
	json.Unmarshal(env.ProviderConfig, &cfg)
	if cfg["network"] != "host" || cfg["stateDir"] != filepath.Join(h.home, "machines") {
		t.Errorf("environment's provider config: %s", env.ProviderConfig)
	}
}

// TestInstallCtrlCAndResume stops a running deploy with Ctrl-C (asked
// first), quits, and continues it with --resume.
func TestInstallCtrlCAndResume(t *testing.T) {
	h := newHarness(t)
	h.block = make(chan struct{})
	m, _ := h.model(tui.Options{})
	d := drive(t, m)
	h.toReview(d)
	d.key("enter")
	d.untilScreen("applying layer", 60*time.Second)
	d.key("ctrl+c")
	d.golden("11-deploy-stop-question")
	d.key("esc") // keep deploying
	if p := deployPage(d); p.Phase() != deploy.Running || strings.Contains(d.m.View(), "Stop the deploy?") {
		t.Fatalf("esc did not keep the deploy going:\n%s", d.m.View())
	}
	d.key("ctrl+c")
	d.key("ctrl+c") // a second Ctrl-C stops
	d.until("the deploy to stop", 30*time.Second, phase(d, deploy.Interrupted))
	d.golden("12-deploy-interrupted")
	d.key("q")
	var ue *usererr.Error
	if !d.quit || !errors.As(d.m.Err(), &ue) || ue.Kind != usererr.KindInterrupted || !strings.Contains(ue.Hint, "k2 install --resume dev") {
		t.Fatalf("quit after the stop: quit %v, err %v", d.quit, d.m.Err())
	}

	// k2 install --resume dev: straight to the deploy, which continues the
	// journal (the machines are not made again).
	h.mu.Lock()
	h.block = nil
	h.mu.Unlock()
	m2, _ := h.model(tui.Options{Resume: "dev"})
	d2 := drive(t, m2)
	d2.until("the resumed deploy to succeed", 60*time.Second, phase(d2, deploy.Succeeded))
	d2.golden("13-deploy-resumed")
	s, err := state.Open(context.Background(), h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hist, _ := s.History(context.Background(), "dev", 0)
	if len(hist) != 1 || hist[0].Result != state.Succeeded {
		t.Errorf("history after the resume: %+v", hist)
	}
	if got := h.machines(); len(got) != 3 {
		t.Errorf("machines after the resume: %v", got)
	}
}

// TestInstallRollBack rolls a failed deploy back from the failure screen.
func TestInstallRollBack(t *testing.T) {
	h := newHarness(t)
	h.fails = 100
	m, _ := h.model(tui.Options{})
	d := drive(t, m)
	h.toReview(d)
	d.key("enter")
	d.until("the deploy to fail", 60*time.Second, phase(d, deploy.Failed))
	d.key("b")
	d.until("the roll back", 60*time.Second, phase(d, deploy.RolledBack))
	d.golden("14-deploy-rolled-back")
	if got := h.machines(); len(got) != 0 {
		t.Errorf("machines after the roll back: %v", got)
	}
	s, err := state.Open(context.Background(), h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, _ := s.LatestDeployment(context.Background(), "dev"); last == nil || last.Result != state.RolledBack {
		t.Errorf("last deployment: %+v", last)
	}
}

// TestInstallGateRefused: an environment's gate that refuses the artifact
// stops the installer at the settings, and again at the deploy, which
// then makes nothing.
func TestInstallGateRefused(t *testing.T) {
	h := newHarness(t)
	refusal := usererr.Wrap(usererr.KindFailure, errors.New("environment dev refuses deploy of shop:latest: gate signed-by: not signed"),
		"sign it with a trusted key: k2 sign shop:latest --key <private key>; nothing was changed")
	h.refuse = refusal
	m, _ := h.model(tui.Options{})
	d := drive(t, m)
	h.fillSettings(d)
	d.untilScreen("gate signed-by: not signed", 30*time.Second)
	if step(d) != common.StepSettings {
		t.Fatalf("a refused artifact left the settings")
	}
	// Let it through the settings, then refuse at the deploy.
	h.mu.Lock()
	h.refuse = nil
	h.mu.Unlock()
	for range 6 {
		d.key("enter")
	}
	d.untilScreen("Review the plan", 30*time.Second)
	h.mu.Lock()
	h.refuse = refusal
	h.mu.Unlock()
	d.key("enter")
	d.until("the deploy to fail", 30*time.Second, phase(d, deploy.Failed))
	if v := d.m.View(); !strings.Contains(v, "gate signed-by: not signed") || !strings.Contains(v, "k2 sign shop:latest") {
		t.Errorf("the deploy's refusal:\n%s", v)
	}
	s, err := state.Open(context.Background(), h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetEnv(context.Background(), "dev"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a refused deploy created the environment: %v", err)
	}
}
