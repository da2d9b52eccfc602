package state_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/state"
)

func TestEnvRegistryAndPolicy(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	e, err := s.CreateEnv(ctx, state.Environment{Name: "prod", Provider: "local", Registry: "127.0.0.1:5001/mirror"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Registry != "127.0.0.1:5001/mirror" || !e.Policy.IsZero() {
		t.Errorf("created env: registry %q, policy %+v", e.Registry, e.Policy)
	}
	want := state.Policy{
		HealthyFor: state.Duration{Duration: 90 * time.Second},
		SignedBy:   []state.TrustedKey{{ID: "sha256:ab", Source: "release.pub", PEM: "-----BEGIN PUBLIC KEY-----\n…"}},
		Approval:   true,
	}
	got, err := s.UpdateEnv(ctx, "prod", func(e *state.Environment) error {
		e.Policy = want
		e.Registry = "registry.example/k2"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Policy); diff != "" {
		t.Errorf("policy after update (-want +got):\n%s", diff)
	}
	if got.Registry != "registry.example/k2" {
		t.Errorf("registry = %q", got.Registry)
	}
	again, _ := s.GetEnv(ctx, "prod")
	if diff := cmp.Diff(want, again.Policy); diff != "" {
		t.Errorf("policy read back (-want +got):\n%s", diff)
	}

	for _, bad := range []string{"http://reg.example", "reg.example/App", "noport", "reg.example/a:v1", "reg.example/a@sha256:00"} {
		_, err := s.UpdateEnv(ctx, "prod", func(e *state.Environment) error { e.Registry = bad; return nil })
		if !errors.Is(err, state.ErrInvalid) {
			t.Errorf("registry %q: err = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "x", Provider: "local", Registry: "nohost"}); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("CreateEnv with a bad registry = %v", err)
	}
	// A failing fn changes nothing.
	if _, err := s.UpdateEnv(ctx, "prod", func(e *state.Environment) error {
		e.Registry = "other.example"
		return errors.New("no")
	}); err == nil {
		t.Error("UpdateEnv ignored fn's error")
	}
	if e, _ := s.GetEnv(ctx, "prod"); e.Registry != "registry.example/k2" {
		t.Errorf("a failed update changed the registry to %q", e.Registry)
	}
	if _, err := s.UpdateEnv(ctx, "nope", func(*state.Environment) error { return nil }); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("UpdateEnv(missing) = %v", err)
	}
}

func TestApprovals(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustEnv(t, s, "prod")
	d1 := "sha256:" + strings.Repeat("a", 64)
	d2 := "sha256:" + strings.Repeat("b", 64)
	t.Setenv(state.ActorEnv, "release-bot")
	a, err := s.Approve(ctx, state.Approval{Env: "prod", Digest: d1, Comment: "CAB-12"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Actor != "release-bot" || a.ApprovedAt.IsZero() {
		t.Errorf("approval = %+v", a)
	}
	if _, err := s.Approve(ctx, state.Approval{Env: "prod", Digest: d1, Actor: "alice", Comment: "ok"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Approve(ctx, state.Approval{Env: "prod", Digest: d1, Actor: "alice", Comment: "ok again"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Approvals(ctx, "prod", d1)
	if err != nil {
		t.Fatal(err)
	}
	var who []string
	for _, a := range got {
		who = append(who, a.Actor+":"+a.Comment)
	}
	if diff := cmp.Diff([]string{"alice:ok again", "release-bot:CAB-12"}, who); diff != "" {
		t.Errorf("approvals of d1 (-want +got):\n%s", diff)
	}
	if got, _ := s.Approvals(ctx, "prod", d2); len(got) != 0 {
		t.Errorf("approvals of d2 = %v", got)
	}
	if _, err := s.Approve(ctx, state.Approval{Env: "prod", Digest: "sha256:abc"}); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("short digest: %v", err)
	}
	if _, err := s.Approve(ctx, state.Approval{Env: "nope", Digest: d1}); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("unknown env: %v", err)
	}
	if err := s.DeleteEnv(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	mustEnv(t, s, "prod")
	if got, _ := s.Approvals(ctx, "prod", ""); len(got) != 0 {
		t.Errorf("approvals survived deleting the environment: %v", got)
	}
}

func TestDeploymentRecordsValuesActorSource(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustEnv(t, s, "prod")
	t.Setenv(state.ActorEnv, "ci")
	d, err := s.BeginDeployment(ctx, state.Deployment{Env: "prod", Op: state.OpPromote, Source: "staging", ArtifactRef: "r/a@sha256:1"})
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{"replicas": "3", "greeting": "hi"}
	if err := s.SetDeploymentValues(ctx, d.ID, vals); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetDeployment(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Actor != "ci" || got.Source != "staging" || got.Op != state.OpPromote {
		t.Errorf("deployment = %+v", got)
	}
	if diff := cmp.Diff(vals, got.Values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if got.ValuesHash != state.ValuesHash(map[string]string{"greeting": "hi", "replicas": "3"}) || !strings.HasPrefix(got.ValuesHash, "sha256:") {
		t.Errorf("values hash = %q", got.ValuesHash)
	}
	if state.ValuesHash(map[string]string{"replicas": "4", "greeting": "hi"}) == got.ValuesHash {
		t.Error("different values have the same hash")
	}
	if err := s.SetDeploymentValues(ctx, "d-nope", vals); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("SetDeploymentValues(unknown) = %v", err)
	}
}
