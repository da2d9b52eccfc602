package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// record adds a finished deployment to env's history.
func record(t *testing.T, s *state.Store, env string, op state.Op, digest string, vals map[string]string, r state.Result) *state.Deployment {
	t.Helper()
	ctx := context.Background()
	d, err := s.BeginDeployment(ctx, state.Deployment{Env: env, Op: op, ArtifactRef: "reg.example/app:x", ArtifactDigest: digest})
	if err != nil {
		t.Fatal(err)
	}
	if vals != nil {
		if err := s.SetDeploymentValues(ctx, d.ID, vals); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FinishDeployment(ctx, d.ID, r, ""); err != nil {
		t.Fatal(err)
	}
	return d
}

func dg(c string) string { return "sha256:" + strings.Repeat(c, 64) }

func TestRollbackTarget(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s, err := state.Open(ctx, t.TempDir(), state.WithClock(func() time.Time { now = now.Add(time.Second); return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "prod", Provider: "local"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := engine.RollbackTarget(ctx, s, "prod", ""); !errors.Is(err, engine.ErrNotDeployed) {
		t.Fatalf("never deployed: %v", err)
	}
	v2 := map[string]string{"replicas": "2"}
	v3 := map[string]string{"replicas": "3"}
	record(t, s, "prod", state.OpDeploy, dg("0"), v2, state.Succeeded)
	record(t, s, "prod", state.OpDestroy, "", nil, state.Succeeded)
	a1 := record(t, s, "prod", state.OpDeploy, dg("a"), v2, state.Succeeded)
	if _, _, err := engine.RollbackTarget(ctx, s, "prod", ""); err == nil || !strings.Contains(err.Error(), "no earlier deployment") {
		t.Fatalf("only one deployment since the destroy: %v", err)
	}
	b1 := record(t, s, "prod", state.OpPromote, dg("b"), v2, state.Succeeded)
	record(t, s, "prod", state.OpUpgrade, dg("c"), v2, state.Failed)
	record(t, s, "prod", state.OpUpgrade, dg("b"), v3, state.Succeeded)       // same digest, other values
	b3 := record(t, s, "prod", state.OpUpgrade, dg("b"), v3, state.Succeeded) // a no-op re-deploy

	cur, last, err := engine.Current(ctx, s, "prod")
	if err != nil || cur.ID != b3.ID || last.ID != b3.ID {
		t.Fatalf("Current = %v, %v, %v; want %s", cur, last, err, b3.ID)
	}
	for _, tc := range []struct {
		name, to string
		want     string // deployment id, or an error substring
	}{
		{"previous values", "", b1.ID},
		{"by digest", dg("a"), a1.ID},
		{"by prefix", "aaaaaaa", a1.ID},
		{"newest of a digest", "sha256:bbbbbbbb", b3.ID},
		{"failed deployment", dg("c"), "never ran"},
		{"before the destroy", dg("0"), "never ran"},
		{"too short", "aaa", "at least 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, cur, err := engine.RollbackTarget(ctx, s, "prod", tc.to)
			if strings.HasPrefix(tc.want, "d-") {
				if err != nil || got.ID != tc.want || cur.ID != b3.ID {
					t.Fatalf("RollbackTarget(%q) = %v, %v, %v; want %s", tc.to, got, cur, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RollbackTarget(%q) err = %v, want %q", tc.to, err, tc.want)
			}
		})
	}
	// Rolling back a rollback restores the newest deployment that differs:
	// the one the first rollback undid.
	rb := record(t, s, "prod", state.OpRollback, dg("b"), v2, state.Succeeded)
	got, _, err := engine.RollbackTarget(ctx, s, "prod", "")
	if err != nil || got.ID != b3.ID {
		t.Fatalf("after rollback %s: target %v, %v; want %s (the newest that differs)", rb.ID, got, err, b3.ID)
	}

	record(t, s, "prod", state.OpDestroy, "", nil, state.Succeeded)
	if _, _, err := engine.Current(ctx, s, "prod"); !errors.Is(err, engine.ErrNotDeployed) {
		t.Errorf("Current after destroy = %v", err)
	}
}
