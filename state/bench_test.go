package state_test

import (
	"context"
	"fmt"
	"testing"

	"k2.dev/k2/state"
)

// BenchmarkOpen measures opening an existing, migrated database: what every
// k2 command that reads state pays.
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	home := b.TempDir()
	s, err := state.Open(ctx, home)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	for b.Loop() {
		s, err := state.Open(ctx, home)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkJournalStep measures journaling one step (started + done): the
// engine's overhead per step or per machine.
func BenchmarkJournalStep(b *testing.B) {
	ctx := context.Background()
	s, err := state.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "prod", Provider: "local"}); err != nil {
		b.Fatal(err)
	}
	d, err := s.BeginDeployment(ctx, state.Deployment{Env: "prod"})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		key := fmt.Sprint(i)
		i++
		if _, err := s.StepStarted(ctx, d.ID, "apply", key); err != nil {
			b.Fatal(err)
		}
		if err := s.StepDone(ctx, d.ID, "apply", key, []byte(`{"ok":true}`)); err != nil {
			b.Fatal(err)
		}
	}
}
