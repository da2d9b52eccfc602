package cluster

import (
	"context"
	"time"

	"k2.dev/k2/state"
)

// Health is whether an environment is healthy and since when: what a
// promotion's health gate asks of the source environment.
type Health struct {
	Env     string `json:"env"`
	Healthy bool   `json:"healthy"`
	// Since is when it last became healthy: the latest of its last
	// deployment's end, every node's Ready transition and every App's
	// Ready transition (all of them Ready now). Zero when not healthy.
	Since time.Time `json:"since,omitzero"`
	// For is how long it has been healthy at the time of the check.
	For      time.Duration `json:"for,omitempty"`
	Problems []string      `json:"problems,omitempty"`
}

// GetHealth checks env as `k2 status` does (last deployment succeeded,
// every node Ready, every App Ready) and derives since when it has been
// healthy from the cluster's own Ready transition times (GetStatus's
// ReadySince), so no k2 process needs to have watched it.
func GetHealth(ctx context.Context, s *state.Store, home, env string, now time.Time) (*Health, error) {
	st, err := GetStatus(ctx, s, home, env)
	if err != nil {
		return nil, err
	}
	h := &Health{Env: env, Problems: st.Problems}
	if !st.Healthy {
		return h, nil
	}
	since := st.Last.FinishedAt
	for _, n := range st.Nodes {
		if n.ReadySince.After(since) {
			since = n.ReadySince
		}
	}
	for _, a := range st.Apps {
		if a.ReadySince.After(since) {
			since = a.ReadySince
		}
	}
	h.Healthy, h.Since = true, since
	if d := now.Sub(since); d > 0 {
		h.For = d
	}
	return h, nil
}
