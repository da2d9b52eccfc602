package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// pane is one tmux session running a command in an 80×24 terminal on a
// tmux server of the test's own (its socket is named after the test), so
// it never touches anyone's tmux.
type pane struct {
	t      *testing.T
	socket string
}

// panes counts the panes made, for their sockets' names.
var panes int

func newPane(t *testing.T, env []string, argv ...string) *pane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing; .ci/run installs it")
		}
		t.Skip("tmux is not installed")
	}
	panes++
	p := &pane{t: t, socket: fmt.Sprintf("k2-e2e-install-%d-%d", os.Getpid(), panes)}
	// The command's exit status stays on the screen after it ends.
	shell := shellJoin(argv) + `; echo "k2-exit=$?"; sleep 3600`
	args := []string{"new-session", "-d", "-s", "k2", "-x", "80", "-y", "24"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	p.tmux(append(args, shell)...)
	t.Cleanup(p.close)
	return p
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func (p *pane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// close ends the pane's tmux server.
func (p *pane) close() { exec.Command("tmux", "-L", p.socket, "kill-server").Run() }

// capture is the screen's text.
func (p *pane) capture() string { return p.tmux("capture-pane", "-p", "-t", "k2") }

// keys sends tmux key names (Enter, Down, C-u, Escape…).
func (p *pane) keys(keys ...string) {
	p.t.Helper()
	for _, k := range keys {
		p.tmux("send-keys", "-t", "k2", k)
		time.Sleep(150 * time.Millisecond) // one screen update per key, as a person types
	}
}

// typ types text literally.
func (p *pane) typ(text string) {
	p.t.Helper()
	p.tmux("send-keys", "-t", "k2", "-l", text)
	time.Sleep(300 * time.Millisecond)
}

// wait waits for text on the screen and returns the screen.
func (p *pane) wait(text string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.capture()
		if strings.Contains(s, text) {
			time.Sleep(300 * time.Millisecond) // let the rest of the frame land
			return p.capture()
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting %s for %q; the screen:\n%s", timeout, text, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// installMasks make captures comparable: times, digests, request ids,
// addresses and the test's directories.
func installMasks(home, repo string) []func(string) string {
	re := func(expr, with string) func(string) string {
		r := regexp.MustCompile(expr)
		return func(s string) string {
			return r.ReplaceAllStringFunc(s, func(x string) string {
				if strings.HasPrefix(x, "  ") && with == "<t>" { // a right-aligned column keeps its width
					return fmt.Sprintf("%*s", len(x), with)
				}
				if strings.HasPrefix(x, " ") && with == "<t>" {
					return " " + with
				}
				return with
			})
		}
	}
	lit := func(old, with string) func(string) string {
		return func(s string) string { return strings.ReplaceAll(s, old, with) }
	}
	return []func(string) string{
		lit(home, "$K2_HOME"), lit(repo, "$REPO"),
		re(`sha256:[0-9a-f]{6,64}…?`, "sha256:<digest>"),
		re(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)`, "<date>"),
		lit("docker.io/library/", ""), // how the artifact spells nginx:1.27
		re(`k2-[0-9a-f]{32}`, "k2-<request-id>"),
		re(`\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b`, "<address>"),
		re(` *\b(\d+(\.\d+)?s|\d+m\d\ds|\d+h\d\dm)\b`, "<t>"),
		re(`[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]`, "⠋"),
	}
}

func maskScreen(s string, masks []func(string) string) string {
	for _, m := range masks {
		s = m(s)
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "install", name+".golden")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// onlyProvider keeps, of the environment page's provider list, the rows of
// provider name, and makes each run of blank lines one: the built-in
// providers other engineers add must not change this test's screen.
func onlyProvider(screen, name string) string {
	var out []string
	inList := false
	keep := false
	for _, l := range strings.Split(screen, "\n") {
		switch {
		case strings.TrimSpace(l) == "Provider":
			inList = true
		case inList && regexp.MustCompile(`^ [›·✗ ] \S`).MatchString(l):
			f := strings.Fields(strings.TrimLeft(l, " ›·✗"))
			keep = len(f) > 0 && f[0] == name
			if !keep {
				continue
			}
		case inList && strings.HasPrefix(l, "     "): // a note under a row
			if !keep {
				continue
			}
		case inList && strings.TrimSpace(l) != "":
			inList = false
		}
		if strings.TrimSpace(l) == "" && len(out) > 0 && strings.TrimSpace(out[len(out)-1]) == "" {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestInstallTUI runs `k2 install` in tmux against the local provider as
// a person would: build examples/hello from the artifact page, name the
// environment, pick local, set network=host, review, deploy, stop it with
// Ctrl-C, resume it with --resume, and read the
// done page; each screen is compared with a golden capture. It ends with a
// cluster whose nodes the real kubectl sees Ready, as `k2 status` says.
func TestInstallTUI(t *testing.T) {
	home := t.TempDir()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// Without a terminal k2 install refuses and points at k2 deploy.
	if r := k2(t, home, "install"); r.Code != 2 || !strings.Contains(r.Stderr, "k2 deploy") {
		t.Errorf("k2 install without a terminal: exit %d\n%s", r.Code, r.Stderr)
	}

	masks := installMasks(home, repo)
	shot := func(name, screen string) { t.Helper(); checkGolden(t, name, maskScreen(screen, masks)) }
	p := newPane(t, []string{"K2_HOME=" + home, "TERM=screen-256color"}, k2Bin, "install")
	t.Cleanup(func() { k2(t, home, "destroy", "dev", "--yes") })

	shot("1-artifact", p.wait("Which cluster artifact?", 30*time.Second))
	p.keys("Down")
	p.typ(helloDir(t))
	p.keys("Enter")
	shot("2-contents", p.wait("Artifact hello:latest", 60*time.Second))

	p.keys("Enter")
	p.wait("Provider", 60*time.Second)
	p.keys("C-u")
	p.typ("dev")
	p.keys("Enter")
	for i := 0; i < 10 && !strings.Contains(p.capture(), "› local"); i++ {
		p.keys("Down")
	}
	shot("3-environment", onlyProvider(p.wait("› local", 10*time.Second), "local"))

	p.keys("Enter")
	p.wait("stateDir", 30*time.Second)
	p.keys("Enter") // stateDir: the default
	p.typ("host")   // network: simulated pods, no namespaces
	shot("4-settings", p.wait("> host", 10*time.Second))
	// The other settings and ARGs keep their defaults: enter on each until
	// the last, greeting, has the focus (however many settings local has).
	for i := 0; i < 12 && !strings.Contains(p.capture(), "┃ greeting"); i++ {
		p.keys("Enter")
	}
	p.wait("┃ greeting", 10*time.Second)
	p.keys("Enter")
	review := p.wait("Review the plan", 60*time.Second)
	shot("5-review", review)

	// The review shows what k2 deploy --dry-run prints.
	dry := mustK2(t, home, "deploy", "hello:latest", "--env", "dev", "--provider", "local", "--dry-run").Stdout
	checkReview(t, review, dry)

	// Ctrl-C while the control plane comes up: asked first, then the
	// deploy stops, resumable, and k2 install exits 130 saying how.
	p.keys("Enter")
	p.wait("✓ control-plane ", 2*time.Minute)
	p.keys("C-c")
	p.wait("Stop the deploy?", 10*time.Second)
	p.keys("C-c")
	if s := p.wait("Resume later with 'k2 install --resume dev'", time.Minute); !strings.Contains(s, "■") {
		t.Errorf("the stopped deploy shows no stopped step:\n%s", s)
	}
	p.keys("q")
	if s := p.wait("k2-exit=", 30*time.Second); !strings.Contains(s, "k2-exit=130") || !strings.Contains(s, "k2 install --resume dev") {
		t.Errorf("after quitting the stopped deploy:\n%s", s)
	}
	p.close()

	// k2 install --resume dev continues the journal to the end.
	p = newPane(t, []string{"K2_HOME=" + home, "TERM=screen-256color"}, k2Bin, "install", "--resume", "dev")
	done := p.wait("Press enter to see the cluster", 4*time.Minute)
	shot("6-deploy", done)
	p.keys("l")
	if s := p.wait("log (l to hide)", 10*time.Second); !regexp.MustCompile(`\d\d:\d\d:\d\d (INFO|WARN) `).MatchString(s) {
		t.Errorf("the log pane shows no log:\n%s", s)
	}
	p.keys("l", "Enter")
	final := p.wait("healthy:", 60*time.Second)
	shot("7-done", final)

	// The real kubectl sees every node Ready; k2 status agrees.
	nodes := kubectlEnv(t, home, "dev", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	ready := 0
	for _, l := range strings.Split(strings.TrimSpace(nodes), "\n") {
		if !strings.HasSuffix(l, " True") {
			t.Errorf("kubectl: node not Ready: %s", l)
		}
		ready++
	}
	st := status(t, home, "dev")
	if !st.Healthy || len(st.Nodes) != ready || ready < 2 {
		t.Errorf("k2 status: healthy %v, %d nodes; kubectl: %d Ready\n%s", st.Healthy, len(st.Nodes), ready, nodes)
	}
	if !strings.Contains(final, fmt.Sprintf("healthy: %d of %d nodes Ready", ready, ready)) {
		t.Errorf("the done page does not say %d of %d nodes Ready:\n%s", ready, ready, final)
	}

	p.keys("q")
	exit := p.wait("k2-exit=", 30*time.Second)
	if !strings.Contains(exit, "k2-exit=0") || !strings.Contains(exit, "kubeconfig: "+filepath.Join(home, "clusters/dev/admin.kubeconfig")) {
		t.Errorf("after quitting:\n%s", exit)
	}
	var hist []struct{ Result string }
	json.Unmarshal([]byte(mustK2(t, home, "history", "dev", "-o", "json").Stdout), &hist)
	if len(hist) != 1 || hist[0].Result != "succeeded" {
		t.Errorf("history: %+v", hist)
	}
}

// checkReview checks that the plan lines on the review screen are those
// of k2 deploy --dry-run, in order (cut at the screen's width).
func checkReview(t *testing.T, screen, dry string) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "Plan for environment") {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("no plan on the review screen:\n%s", screen)
	}
	want := strings.Split(strings.TrimRight(dry, "\n"), "\n")
	n := 0
	for i := start; i < len(lines) && n < len(want); i, n = i+1, n+1 {
		got := strings.TrimRight(strings.TrimPrefix(lines[i], " "), " ")
		if strings.HasPrefix(strings.TrimSpace(got), "↓ more") || got == "" && want[n] != "" {
			break
		}
		w := strings.TrimRight(want[n], " ")
		if len([]rune(w)) > 78 {
			w = string([]rune(w)[:78])
		}
		if strings.TrimRight(w, " ") != got {
			t.Errorf("review line %d: %q, dry-run: %q", n+1, got, want[n])
		}
	}
	if n < 8 {
		t.Errorf("only %d plan lines compared:\n%s", n, screen)
	}
}
