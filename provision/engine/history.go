package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/state"
)

// ValueMap returns the plan's resolved ARG values by name: what the
// deployment records, and what a rollback to it deploys with.
func (p *Plan) ValueMap() map[string]string {
	m := make(map[string]string, len(p.Values))
	for _, v := range p.Values {
		m[v.Name] = v.Value
	}
	return m
}

// ErrNotDeployed means the environment runs no artifact (never deployed, or
// destroyed since).
var ErrNotDeployed = errors.New("not deployed")

// Current returns the deployment whose artifact env runs: its newest
// succeeded deployment that put an artifact on it. An environment never
// deployed, or destroyed since, is ErrNotDeployed. last is env's newest
// deployment of any kind and result (nil if none), for callers that must
// refuse when it failed.
func Current(ctx context.Context, s *state.Store, env string) (cur, last *state.Deployment, err error) {
	h, err := s.History(ctx, env, 0)
	if err != nil {
		return nil, nil, UserError(err)
	}
	if len(h) > 0 {
		last = &h[0]
	}
	for i := range h {
		d := &h[i]
		if d.Result != state.Succeeded {
			continue
		}
		if d.Op == state.OpDestroy {
			break
		}
		if d.ArtifactDigest != "" {
			return d, last, nil
		}
	}
	return nil, last, usererr.Wrap(usererr.KindFailure, fmt.Errorf("environment %s: %w", env, ErrNotDeployed),
		fmt.Sprintf("deploy it first: k2 deploy <ref> --env %s", env))
}

// RollbackTarget picks the deployment `k2 rollback env [--to digest]`
// restores. With to "" it is the newest succeeded deployment before the
// current one whose digest or values differ from the current one's; with
// to set (a full digest, or a unique prefix of its hex part of at least 7
// characters) the newest succeeded deployment of that digest. Only
// deployments since the last destroy count.
func RollbackTarget(ctx context.Context, s *state.Store, env, to string) (target, current *state.Deployment, err error) {
	cur, _, err := Current(ctx, s, env)
	if err != nil {
		return nil, nil, err
	}
	h, err := s.History(ctx, env, 0)
	if err != nil {
		return nil, nil, UserError(err)
	}
	var candidates []*state.Deployment
	for i := range h {
		d := &h[i]
		if d.Op == state.OpDestroy && d.Result == state.Succeeded {
			break
		}
		if d.Result == state.Succeeded && d.Op.Deploys() && d.ArtifactDigest != "" {
			candidates = append(candidates, d)
		}
	}
	if to == "" {
		past := false
		for _, d := range candidates {
			if d.ID == cur.ID {
				past = true
				continue
			}
			if past && (d.ArtifactDigest != cur.ArtifactDigest || d.ValuesHash != cur.ValuesHash) {
				return d, cur, nil
			}
		}
		return nil, cur, usererr.New(usererr.KindFailure,
			"environment %s has no earlier deployment to roll back to (it runs %s, its first since it was created or destroyed); see 'k2 history %s'",
			env, short(cur.ArtifactDigest), env)
	}
	want := strings.TrimPrefix(to, "sha256:")
	if len(want) < 7 {
		return nil, cur, usererr.New(usererr.KindUsage, "--to %q: give a digest (sha256:…) or at least 7 of its hex digits", to)
	}
	var match *state.Deployment
	for _, d := range candidates {
		if !strings.HasPrefix(strings.TrimPrefix(d.ArtifactDigest, "sha256:"), want) {
			continue
		}
		if match != nil && match.ArtifactDigest != d.ArtifactDigest {
			return nil, cur, usererr.New(usererr.KindUsage, "--to %s matches %s and %s; give more digits", to, match.ArtifactDigest, d.ArtifactDigest)
		}
		if match == nil {
			match = d
		}
	}
	if match == nil {
		return nil, cur, usererr.New(usererr.KindFailure,
			"environment %s never ran %s successfully since it was created or last destroyed; see 'k2 history %s'", env, to, env)
	}
	return match, cur, nil
}

// short abbreviates a digest for messages and tables: sha256:0123456789ab.
func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// ShortDigest abbreviates a digest to its algorithm and 12 hex digits.
func ShortDigest(digest string) string { return short(digest) }
