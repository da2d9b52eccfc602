package engine_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// The kill test runs a five-step plan in a child process (this test binary,
// re-executed) that SIGKILLs itself at a chosen point, then runs it again
// and checks that the second run resumes from the journal and reaches the
// same end state as an uninterrupted run, with no side effect made twice.
//
// The side effects go to a separate SQLite file, the "world", through
// world.make: like a provider's Create it is idempotent by key, and it logs
// every call and every effect actually made.

const (
	childEnv  = "K2_ENGINE_TEST_CHILD"   // home directory of the child's run
	killAtEnv = "K2_ENGINE_TEST_KILL_AT" // "step[/item]:phase", phase before|after|journaled
)

func TestMain(m *testing.M) {
	if home := os.Getenv(childEnv); home != "" {
		if err := childRun(home, os.Getenv(killAtEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type world struct{ db *sql.DB }

func openWorld(home string) (*world, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(home, "world.db")+"?_busy_timeout=5000&_txlock=immediate&_journal_mode=WAL")
	if err != nil {
		return nil, err
	}
	_, err = db.Exec(`CREATE TABLE IF NOT EXISTS things (key TEXT PRIMARY KEY, value TEXT NOT NULL);
		CREATE TABLE IF NOT EXISTS effects (n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL);
		CREATE TABLE IF NOT EXISTS calls (n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL)`)
	return &world{db}, err
}

// make returns the thing named key, making it (an effect) only if it does
// not exist yet. Every call is logged.
func (w *world) make(ctx context.Context, key string) (string, error) {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO calls (key) VALUES (?)`, key); err != nil {
		return "", err
	}
	var v string
	err = tx.QueryRow(`SELECT value FROM things WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		v = "id-" + key
		if _, err := tx.Exec(`INSERT INTO things (key, value) VALUES (?, ?)`, key, v); err != nil {
			return "", err
		}
		if _, err := tx.Exec(`INSERT INTO effects (key) VALUES (?)`, key); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	return v, tx.Commit()
}

// killer SIGKILLs this process when the run reaches point.
type killer struct{ point string }

func (k killer) at(point string) {
	if k.point == point {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// effectStep makes one thing; its output (the thing's id) goes to ServerURL
// through Resumer, so later steps see it on resume too.
type effectStep struct {
	name string
	w    *world
	k    killer
	url  bool // set State.ServerURL from the thing's id
}

func (s *effectStep) Name() string { return s.name }

func (s *effectStep) Run(ctx context.Context, st *engine.State) error {
	s.k.at(s.name + ":before")
	v, err := s.w.make(ctx, s.name)
	if err != nil {
		return err
	}
	if s.url {
		st.ServerURL = "https://" + v
	}
	s.k.at(s.name + ":after")
	return nil
}

func (s *effectStep) Cleanup(context.Context, *engine.State) {}

func (s *effectStep) Output(st *engine.State) (any, error) { return st.ServerURL, nil }

func (s *effectStep) Resume(_ context.Context, st *engine.State, out json.RawMessage) error {
	if !s.url {
		return nil
	}
	return json.Unmarshal(out, &st.ServerURL)
}

// itemsStep makes one thing per item through engine.Do and, for machines,
// records them in the state store. It needs ServerURL from an earlier step.
type itemsStep struct {
	name     string
	items    []string
	w        *world
	k        killer
	machines bool
}

func (s *itemsStep) Name() string { return s.name }

func (s *itemsStep) Run(ctx context.Context, st *engine.State) error {
	if st.ServerURL == "" {
		return errors.New("ServerURL not restored")
	}
	s.k.at(s.name + ":before")
	for _, it := range s.items {
		id, err := engine.Do(ctx, st, it, func(ctx context.Context) (string, error) {
			s.k.at(s.name + "/" + it + ":before")
			v, err := s.w.make(ctx, s.name+"/"+it)
			if err != nil {
				return "", err
			}
			st.Progress(it, 50, "made %s", v)
			s.k.at(s.name + "/" + it + ":after")
			return v, nil
		})
		if err != nil {
			return err
		}
		if s.machines {
			err := st.Store.PutMachine(ctx, state.Machine{Env: st.Env.Name, Name: it, RequestID: st.Env.UID + "/" + it,
				ProviderID: id, Pool: "worker", Role: "worker", State: state.MachineCreated, Addresses: []string{st.ServerURL}})
			if err != nil {
				return err
			}
		}
	}
	s.k.at(s.name + ":after")
	return nil
}

func (s *itemsStep) Cleanup(context.Context, *engine.State) {}

func testPlan(w *world, k killer) []engine.Step {
	return []engine.Step{
		&effectStep{name: "pull", w: w, k: k},
		&effectStep{name: "controlplane", w: w, k: k, url: true},
		&itemsStep{name: "machines", items: []string{"m0", "m1", "m2"}, w: w, k: k, machines: true},
		&itemsStep{name: "apply", items: []string{"base", "app"}, w: w, k: k},
		&effectStep{name: "record", w: w, k: k},
	}
}

// killPoints lists every point of testPlan where the child can be killed.
func killPoints() []string {
	var pts []string
	for _, s := range testPlan(nil, killer{}) {
		pts = append(pts, s.Name()+":before", s.Name()+":after")
		if is, ok := s.(*itemsStep); ok {
			for _, it := range is.items {
				for _, ph := range []string{"before", "after", "journaled"} {
					pts = append(pts, s.Name()+"/"+it+":"+ph)
				}
			}
		}
		pts = append(pts, s.Name()+":journaled")
	}
	return pts
}

func childRun(home, killAt string) error {
	ctx := context.Background()
	s, err := state.Open(ctx, home)
	if err != nil {
		return err
	}
	defer s.Close()
	w, err := openWorld(home)
	if err != nil {
		return err
	}
	k := killer{point: killAt}
	ss, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "reg/app:v1", Command: "k2 deploy (test child)"})
	if err != nil {
		return err
	}
	r := &engine.Runner{Store: s, OnEvent: func(e engine.Event) {
		switch e.Kind {
		case engine.EventStepDone:
			k.at(e.Step + ":journaled")
		case engine.EventItemDone:
			k.at(e.Step + "/" + e.Machine + ":journaled")
		}
	}}
	runErr := r.Run(ctx, ss.State, testPlan(w, k))
	return errors.Join(runErr, ss.Finish(ctx, runErr, false))
}

// runChild runs the plan in a child process; killAt "" runs to the end.
func runChild(t *testing.T, home, killAt string) (killed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+home, killAtEnv+"="+killAt)
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("child (kill at %q): %v\n%s", killAt, err, out)
	}
	return false
}

// endState is what a finished deployment leaves, to compare runs.
type endState struct {
	Things   map[string]string
	Effects  map[string]int // effects made per key: each must be 1
	Machines []state.Machine
	Steps    map[string]state.StepState
	History  []state.Result
}

func readEnd(t *testing.T, home string) (endState, map[string]int) {
	t.Helper()
	ctx := context.Background()
	w, err := openWorld(home)
	if err != nil {
		t.Fatal(err)
	}
	defer w.db.Close()
	e := endState{Things: map[string]string{}, Effects: map[string]int{}, Steps: map[string]state.StepState{}}
	calls := map[string]int{}
	q := func(query string, fn func(k string, v any)) {
		rows, err := w.db.Query(query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var v any
			rows.Scan(&k, &v)
			fn(k, v)
		}
	}
	q(`SELECT key, value FROM things`, func(k string, v any) { e.Things[k] = v.(string) })
	q(`SELECT key, count(*) FROM effects GROUP BY key`, func(k string, v any) { e.Effects[k] = int(v.(int64)) })
	q(`SELECT key, count(*) FROM calls GROUP BY key`, func(k string, v any) { calls[k] = int(v.(int64)) })

	s, err := state.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e.Machines, err = s.ListMachines(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, "prod", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range h {
		e.History = append(e.History, d.Result)
		j, _ := s.Journal(ctx, d.ID)
		for _, r := range j {
			e.Steps[r.Step+"/"+r.Key] = r.State
		}
	}
	return e, calls
}

func newHome(t *testing.T) (home, uid string) {
	t.Helper()
	home = t.TempDir()
	s, err := state.Open(context.Background(), home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.CreateEnv(context.Background(), state.Environment{Name: "prod", Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return home, e.UID
}

// normalise removes what legitimately differs between two homes.
func normalise(e endState, uid string) endState {
	for i := range e.Machines {
		e.Machines[i].RequestID = strings.TrimPrefix(e.Machines[i].RequestID, uid)
	}
	return e
}

var ignoreTimes = cmpopts.IgnoreFields(state.Machine{}, "CreatedAt", "UpdatedAt")

func TestKillAtEachStepAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process per kill point")
	}
	refHome, refUID := newHome(t)
	if runChild(t, refHome, "") {
		t.Fatal("uninterrupted run was killed")
	}
	want, _ := readEnd(t, refHome)
	want = normalise(want, refUID)
	if len(want.Machines) != 3 || len(want.Things) != 8 || want.History[0] != state.Succeeded {
		t.Fatalf("reference run: %+v", want)
	}

	for _, point := range killPoints() {
		t.Run(strings.NewReplacer("/", "_", ":", "_").Replace(point), func(t *testing.T) {
			t.Parallel()
			home, uid := newHome(t)
			if !runChild(t, home, point) {
				t.Fatalf("child was not killed at %s", point)
			}
			if runChild(t, home, "") {
				t.Fatal("second run was killed")
			}
			got, calls := readEnd(t, home)
			if diff := cmp.Diff(want, normalise(got, uid), ignoreTimes); diff != "" {
				t.Errorf("end state after kill at %s differs from an uninterrupted run (-want +got):\n%s", point, diff)
			}
			// A thing made and journaled before the kill is never asked for
			// again; only the one in flight at the kill may be asked twice.
			retried := 0
			for k, n := range calls {
				if n > 1 {
					retried++
					if !strings.HasSuffix(point, ":after") || !strings.HasPrefix(point, k) {
						t.Errorf("%s asked for %d times after a kill at %s", k, n, point)
					}
				}
			}
			if strings.HasSuffix(point, ":journaled") && retried != 0 {
				t.Errorf("kill after journaling: %d things asked for again", retried)
			}
		})
	}
}

// TestKilledRepeatedly kills the same deployment at one point after
// another, each run getting further, and checks the end state once more.
func TestKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	refHome, refUID := newHome(t)
	runChild(t, refHome, "")
	want, _ := readEnd(t, refHome)
	want = normalise(want, refUID)

	home, uid := newHome(t)
	kills := 0
	for _, point := range []string{"pull:after", "controlplane:journaled", "machines/m1:after", "machines/m2:before", "apply/base:journaled", "record:before"} {
		if runChild(t, home, point) {
			kills++
		}
	}
	if kills != 6 {
		t.Errorf("killed %d times, want 6", kills)
	}
	runChild(t, home, "")
	got, calls := readEnd(t, home)
	if diff := cmp.Diff(want, normalise(got, uid), ignoreTimes); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for k, n := range calls {
		if n > 2 {
			t.Errorf("%s asked for %d times", k, n)
		}
	}
}
