package state_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"k2.dev/k2/state"
)

// clock is a fake time source that advances one second per reading.
type clock struct{ t time.Time }

func (c *clock) now() time.Time {
	c.t = c.t.Add(time.Second)
	return c.t
}

func open(t *testing.T, home string, opts ...state.Option) *state.Store {
	t.Helper()
	s, err := state.Open(context.Background(), home, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t *testing.T) *state.Store {
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	return open(t, t.TempDir(), state.WithClock(c.now))
}

func TestOpenFilesArePrivate(t *testing.T) {
	home := filepath.Join(t.TempDir(), "k2home")
	s := open(t, home)
	ctx := context.Background()
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "a", Provider: "local"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		"":             0o700 | os.ModeDir,
		state.DBFile:   0o600,
		state.KeyFile:  0o600,
		"state.db-wal": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(home, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(home, state.KeyFile)); fi.Size() != 32 {
		t.Errorf("state.key is %d bytes, want 32", fi.Size())
	}
}

func TestEnvironments(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	prod, err := s.CreateEnv(ctx, state.Environment{
		Name: "prod", Provider: "metal",
		ProviderConfig:    json.RawMessage(`{"bmc":"10.0.0.1"}`),
		ProviderConfigRef: "metal.yaml",
		Values:            map[string]string{"replicas": "3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if prod.UID == "" || prod.CreatedAt.IsZero() {
		t.Errorf("created env lacks uid or time: %+v", prod)
	}
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "dev", Provider: "local"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		env  state.Environment
		want error
	}{
		{"duplicate", state.Environment{Name: "prod", Provider: "local"}, state.ErrExists},
		{"uppercase", state.Environment{Name: "Prod", Provider: "local"}, state.ErrInvalid},
		{"empty name", state.Environment{Name: "", Provider: "local"}, state.ErrInvalid},
		{"trailing dash", state.Environment{Name: "prod-", Provider: "local"}, state.ErrInvalid},
		{"too long", state.Environment{Name: "a123456789012345678901234567890123456789x", Provider: "local"}, state.ErrInvalid},
		{"no provider", state.Environment{Name: "x"}, state.ErrInvalid},
		{"bad value key", state.Environment{Name: "x", Provider: "local", Values: map[string]string{"a=b": "c"}}, state.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateEnv(ctx, tc.env)
			if !errors.Is(err, tc.want) {
				t.Errorf("CreateEnv = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "y", Provider: "p", ProviderConfig: json.RawMessage(`[1]`)}); err == nil {
		t.Error("a provider config that is not a JSON object was accepted")
	}

	got, err := s.SetEnvValues(ctx, "prod", map[string]string{"replicas": "5", "domain": "x.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"replicas": "5", "domain": "x.test"}, got.Values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("UpdatedAt %v not after CreatedAt %v", got.UpdatedAt, got.CreatedAt)
	}
	got, err = s.SetEnvValues(ctx, "prod", nil, []string{"domain"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"replicas": "5"}, got.Values); diff != "" {
		t.Errorf("values after unset (-want +got):\n%s", diff)
	}
	if string(got.ProviderConfig) != `{"bmc":"10.0.0.1"}` || got.ProviderConfigRef != "metal.yaml" {
		t.Errorf("provider config = %s from %q", got.ProviderConfig, got.ProviderConfigRef)
	}
	if _, err := s.SetEnvValues(ctx, "nope", map[string]string{"a": "b"}, nil); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("SetEnvValues(missing) = %v, want ErrNotFound", err)
	}

	envs, err := s.ListEnvs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range envs {
		names = append(names, e.Name)
	}
	if diff := cmp.Diff([]string{"dev", "prod"}, names); diff != "" {
		t.Errorf("ListEnvs (-want +got):\n%s", diff)
	}
	if _, err := s.GetEnv(ctx, "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("GetEnv(missing) = %v, want ErrNotFound", err)
	}
}

func TestDeleteEnvCascades(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustEnv(t, s, "prod")
	d, err := s.BeginDeployment(ctx, state.Deployment{Env: "prod", ArtifactRef: "r:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StepStarted(ctx, d.ID, "pull", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMachine(ctx, state.Machine{Env: "prod", Name: "m0", RequestID: "r0", Pool: "worker", Role: "worker", State: state.MachineCreated}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSecret(ctx, "prod", state.SecretKubeconfig, []byte("kc")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEnv(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDeployment(ctx, d.ID); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("deployment survived its env: %v", err)
	}
	if j, _ := s.Journal(ctx, d.ID); len(j) != 0 {
		t.Errorf("journal survived its env: %v", j)
	}
	if m, _ := s.ListMachines(ctx, "prod"); len(m) != 0 {
		t.Errorf("machines survived their env: %v", m)
	}
	if _, err := s.GetSecret(ctx, "prod", state.SecretKubeconfig); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("secret survived its env: %v", err)
	}
	if err := s.DeleteEnv(ctx, "prod"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("second DeleteEnv = %v, want ErrNotFound", err)
	}
}

func mustEnv(t *testing.T, s *state.Store, name string) *state.Environment {
	t.Helper()
	e, err := s.CreateEnv(context.Background(), state.Environment{Name: name, Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDeploymentsAndHistory(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustEnv(t, s, "prod")
	mustEnv(t, s, "dev")
	if _, err := s.BeginDeployment(ctx, state.Deployment{Env: "nope"}); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("BeginDeployment(unknown env) = %v, want ErrNotFound", err)
	}
	var ids []string
	for i, r := range []state.Result{state.Succeeded, state.Failed, state.Running} {
		d, err := s.BeginDeployment(ctx, state.Deployment{Env: "prod", ArtifactRef: "reg/app:v" + string(rune('1'+i))})
		if err != nil {
			t.Fatal(err)
		}
		if d.Op != state.OpDeploy || d.Result != state.Running {
			t.Errorf("new deployment = %+v", d)
		}
		ids = append(ids, d.ID)
		if r != state.Running {
			msg := ""
			if r == state.Failed {
				msg = "creating machine prod-worker-0: quota"
			}
			if err := s.FinishDeployment(ctx, d.ID, r, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.BeginDeployment(ctx, state.Deployment{Env: "dev"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeploymentDigest(ctx, ids[2], "sha256:abc"); err != nil {
		t.Fatal(err)
	}

	h, err := s.History(ctx, "prod", 0)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID, Ref, Digest, Err string
		Result               state.Result
		Finished             bool
	}
	var got []row
	for _, d := range h {
		got = append(got, row{d.ID, d.ArtifactRef, d.ArtifactDigest, d.Error, d.Result, !d.FinishedAt.IsZero()})
	}
	want := []row{
		{ids[2], "reg/app:v3", "sha256:abc", "", state.Running, false},
		{ids[1], "reg/app:v2", "", "creating machine prod-worker-0: quota", state.Failed, true},
		{ids[0], "reg/app:v1", "", "", state.Succeeded, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}
	if h, _ := s.History(ctx, "prod", 1); len(h) != 1 || h[0].ID != ids[2] {
		t.Errorf("History(limit 1) = %v", h)
	}
	latest, err := s.LatestDeployment(ctx, "prod")
	if err != nil || latest.ID != ids[2] {
		t.Errorf("LatestDeployment = %v, %v; want %s", latest, err, ids[2])
	}
	if _, err := s.History(ctx, "nope", 0); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("History(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.FinishDeployment(ctx, "d-nope", state.Succeeded, ""); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("FinishDeployment(unknown) = %v", err)
	}
}

func TestJournal(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustEnv(t, s, "prod")
	d, err := s.BeginDeployment(ctx, state.Deployment{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		op, step, key string
		out           string
	}
	for _, c := range []call{
		{"start", "pull", "", ""},
		{"done", "pull", "", `{"digest":"sha256:1"}`},
		{"start", "machines", "", ""},
		{"start", "machines", "prod-cp-0", ""},
		{"fail", "machines", "prod-cp-0", "quota"},
		{"start", "machines", "prod-cp-0", ""}, // retried: attempt 2
		{"done", "machines", "prod-cp-0", `{"id":"i-1"}`},
		{"done", "machines", "", ""},
		{"clean", "machines", "", ""},
	} {
		var err error
		switch c.op {
		case "start":
			_, err = s.StepStarted(ctx, d.ID, c.step, c.key)
		case "done":
			var out json.RawMessage
			if c.out != "" {
				out = json.RawMessage(c.out)
			}
			err = s.StepDone(ctx, d.ID, c.step, c.key, out)
		case "fail":
			err = s.StepFailed(ctx, d.ID, c.step, c.key, c.out)
		case "clean":
			err = s.StepCleaned(ctx, d.ID, c.step, c.key)
		}
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
	}
	j, err := s.Journal(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.StepRecord{
		{DeploymentID: d.ID, Step: "pull", State: state.StepDone, Attempt: 1, Output: json.RawMessage(`{"digest":"sha256:1"}`)},
		{DeploymentID: d.ID, Step: "machines", State: state.StepCleaned, Attempt: 1},
		{DeploymentID: d.ID, Step: "machines", Key: "prod-cp-0", State: state.StepDone, Attempt: 2, Output: json.RawMessage(`{"id":"i-1"}`)},
	}
	if diff := cmp.Diff(want, j, cmpopts.IgnoreFields(state.StepRecord{}, "StartedAt", "FinishedAt")); diff != "" {
		t.Errorf("Journal (-want +got):\n%s", diff)
	}
	for _, r := range j {
		if r.FinishedAt.IsZero() || r.FinishedAt.Before(r.StartedAt) {
			t.Errorf("%s/%s: started %v finished %v", r.Step, r.Key, r.StartedAt, r.FinishedAt)
		}
	}
	if err := s.StepDone(ctx, d.ID, "never", "", nil); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("StepDone of a step never started = %v, want ErrNotFound", err)
	}
	if _, err := s.StepStarted(ctx, "d-nope", "pull", ""); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("StepStarted(unknown deployment) = %v, want ErrNotFound", err)
	}
}

func TestMachines(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustEnv(t, s, "prod")
	m := state.Machine{Env: "prod", Name: "prod-worker-0", RequestID: "req-w0", Pool: "worker", Role: "worker", State: state.MachineRequested}
	if err := s.PutMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.ProviderID, m.Addresses, m.State = "vm-17", []string{"10.0.0.7"}, state.MachineCreated
	if err := s.PutMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMachine(ctx, state.Machine{Env: "prod", Name: "prod-cp-0", RequestID: "req-cp0", Pool: "control-plane", Role: "control-plane", State: state.MachineReady}); err != nil {
		t.Fatal(err)
	}
	// A request id names one machine only.
	if err := s.PutMachine(ctx, state.Machine{Env: "prod", Name: "other", RequestID: "req-w0", Pool: "worker", Role: "worker", State: state.MachineRequested}); err == nil {
		t.Error("two machines with one request id were accepted")
	}
	if err := s.PutMachine(ctx, state.Machine{Env: "nope", Name: "x", RequestID: "r", State: state.MachineRequested}); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("PutMachine(unknown env) = %v, want ErrNotFound", err)
	}
	got, err := s.GetMachine(ctx, "prod", "prod-worker-0")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, *got, cmpopts.IgnoreFields(state.Machine{}, "CreatedAt", "UpdatedAt")); diff != "" {
		t.Errorf("GetMachine (-want +got):\n%s", diff)
	}
	if !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("update did not keep CreatedAt: %v %v", got.CreatedAt, got.UpdatedAt)
	}
	list, err := s.ListMachines(ctx, "prod")
	if err != nil || len(list) != 2 || list[0].Name != "prod-cp-0" {
		t.Errorf("ListMachines = %v, %v", list, err)
	}
	if err := s.DeleteMachine(ctx, "prod", "prod-cp-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMachine(ctx, "prod", "prod-cp-0"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("GetMachine(deleted) = %v", err)
	}
}

func TestSecrets(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := open(t, home)
	mustEnv(t, s, "prod")
	mustEnv(t, s, "dev")
	kubeconfig := []byte("apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: s3cr3t-token}}]\n")
	if err := s.PutSecret(ctx, "prod", state.SecretKubeconfig, kubeconfig); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSecret(ctx, "prod", state.SecretKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(kubeconfig) {
		t.Errorf("round trip = %q", got)
	}
	if _, err := s.GetSecret(ctx, "dev", state.SecretKubeconfig); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("GetSecret(missing) = %v, want ErrNotFound", err)
	}
	s.Close()

	// At rest: neither the db nor its WAL holds the plaintext.
	for _, f := range []string{state.DBFile, state.DBFile + "-wal"} {
		b, _ := os.ReadFile(filepath.Join(home, f))
		if bytes.Contains(b, []byte("s3cr3t-token")) {
			t.Errorf("%s holds the secret in clear", f)
		}
	}

	// A different key cannot read it, and says why.
	if err := os.WriteFile(filepath.Join(home, state.KeyFile), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, home)
	_, err = s2.GetSecret(ctx, "prod", state.SecretKubeconfig)
	if !errors.Is(err, state.ErrWrongKey) {
		t.Errorf("GetSecret with the wrong key = %v, want ErrWrongKey", err)
	}
	s2.Close()

	// A truncated key file is refused at Open.
	if err := os.WriteFile(filepath.Join(home, state.KeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := state.Open(ctx, home); err == nil {
		t.Error("Open with a 5-byte key succeeded")
	}
}

func TestSecretBoundToItsRecord(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s := open(t, home)
	mustEnv(t, s, "prod")
	mustEnv(t, s, "dev")
	if err := s.PutSecret(ctx, "prod", state.SecretJoinToken, []byte("tok")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Move prod's sealed token to dev with plain SQL: decrypting must fail.
	db := rawDB(t, home)
	if _, err := db.Exec(`INSERT INTO secrets (env, name, sealed, updated_at)
		SELECT 'dev', name, sealed, updated_at FROM secrets WHERE env = 'prod'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = open(t, home)
	if _, err := s.GetSecret(ctx, "dev", state.SecretJoinToken); !errors.Is(err, state.ErrWrongKey) {
		t.Errorf("secret copied to another env decrypted: %v", err)
	}
}
