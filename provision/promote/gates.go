// Package promote moves one exact artifact digest from an environment to
// the next: it checks the target environment's gates (the source healthy for
// long enough, a valid signature by a trusted key, a manual approval),
// plans the copy to the target's registry (with the signatures) and hands
// the deploy of that digest, with the target's own values, to the engine.
// The same signature and approval gates guard plain deploys, upgrades and
// rollbacks of an environment.
package promote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/state"
)

// Gate names, as in 'k2 env set ENV --gate NAME=…' and in results.
const (
	GateHealthy   = "healthy"
	GateSignedBy  = "signed-by"
	GateApproval  = "approval"
	GateVerifyKey = "verify-key" // k2 deploy --verify-key, not stored
)

// GateResult is one gate's verdict.
type GateResult struct {
	Gate   string `json:"gate"`
	Passed bool   `json:"passed"`
	// Reason says why it passed or not, for people.
	Reason string `json:"reason"`
}

// Subject is what is being let into an environment.
type Subject struct {
	Env *state.Environment
	Op  state.Op
	// Digest is the artifact's manifest digest; Ref says where it lives
	// (its signatures are checked there).
	Digest, Ref string
	// From is the source environment of a promotion.
	From string
	// VerifyKeys, when set, require a signature by one of them on top of
	// the environment's gates (k2 deploy --verify-key).
	VerifyKeys []*sign.PublicKey
}

// Gates checks a subject against its environment's policy.
type Gates struct {
	State     *state.Store
	Artifacts *artifact.Store
	Remote    artifact.RemoteOptions
	// Home is $K2_HOME, for reaching the source environment's cluster.
	Home string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Check returns the verdict of every gate that applies to sub: for a
// promotion all of them (the health gate needs From); for a deploy or
// upgrade the signature and approval gates; for a rollback the signature
// gate (it restores a digest the environment ran before). An environment
// without gates passes.
func (g *Gates) Check(ctx context.Context, sub Subject) ([]GateResult, error) {
	pol := sub.Env.Policy
	var out []GateResult
	if pol.HealthyFor.Duration > 0 && sub.Op == state.OpPromote && sub.From != "" {
		r, err := g.healthy(ctx, sub.From, pol.HealthyFor.Duration)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(pol.SignedBy) > 0 {
		keys, err := TrustedKeys(pol.SignedBy)
		if err != nil {
			return nil, fmt.Errorf("environment %s: gate %s: %w", sub.Env.Name, GateSignedBy, err)
		}
		out = append(out, g.signed(ctx, GateSignedBy, sub, keys))
	}
	if len(sub.VerifyKeys) > 0 {
		out = append(out, g.signed(ctx, GateVerifyKey, sub, sub.VerifyKeys))
	}
	if pol.Approval && sub.Op != state.OpRollback {
		r, err := g.approved(ctx, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (g *Gates) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Gates) healthy(ctx context.Context, from string, need time.Duration) (GateResult, error) {
	r := GateResult{Gate: GateHealthy}
	h, err := cluster.GetHealth(ctx, g.State, g.Home, from, g.now())
	if err != nil {
		return r, err
	}
	switch {
	case !h.Healthy:
		r.Reason = fmt.Sprintf("%s is not healthy (%s); it must be healthy for %s", from, strings.Join(h.Problems, "; "), need)
	case h.For < need:
		r.Reason = fmt.Sprintf("%s has been healthy for %s (since %s), not yet %s; try again in %s",
			from, h.For.Round(time.Second), h.Since.UTC().Format(time.RFC3339), need, (need - h.For).Round(time.Second))
	default:
		r.Passed = true
		r.Reason = fmt.Sprintf("%s healthy for %s (needs %s)", from, h.For.Round(time.Second), need)
	}
	return r, nil
}

func (g *Gates) signed(ctx context.Context, gate string, sub Subject, keys []*sign.PublicKey) GateResult {
	r := GateResult{Gate: gate}
	res, err := sign.VerifyRef(ctx, g.Artifacts, sub.Ref, keys, g.Remote, sign.VerifyOptions{})
	switch {
	case err != nil:
		r.Reason = err.Error()
	case res.Subject != sub.Digest:
		r.Reason = fmt.Sprintf("%s is %s now, not %s", sub.Ref, res.Subject, sub.Digest)
	default:
		r.Passed = true
		r.Reason = "signed by " + (&sign.PublicKey{ID: res.Key.ID, Source: res.Key.Source}).String()
	}
	return r
}

func (g *Gates) approved(ctx context.Context, sub Subject) (GateResult, error) {
	r := GateResult{Gate: GateApproval}
	as, err := g.State.Approvals(ctx, sub.Env.Name, sub.Digest)
	if err != nil {
		return r, err
	}
	if len(as) == 0 {
		r.Reason = fmt.Sprintf("nobody approved %s for %s", sub.Digest, sub.Env.Name)
		return r, nil
	}
	r.Passed = true
	r.Reason = fmt.Sprintf("approved by %s at %s", as[0].Actor, as[0].ApprovedAt.UTC().Format(time.RFC3339))
	if as[0].Comment != "" {
		r.Reason += " (" + as[0].Comment + ")"
	}
	return r, nil
}

// TrustedKeys parses the keys of a signed-by gate.
func TrustedKeys(tk []state.TrustedKey) ([]*sign.PublicKey, error) {
	keys := make([]*sign.PublicKey, 0, len(tk))
	for _, k := range tk {
		src := k.Source
		if src == "" {
			src = k.ID
		}
		pk, err := sign.ParsePublicKey([]byte(k.PEM), src)
		if err != nil {
			return nil, err
		}
		keys = append(keys, pk)
	}
	return keys, nil
}

// ErrRefused is wrapped when a gate refused to let an artifact into an environment.
var ErrRefused = errors.New("refused")

// RefusedError names the gates that refused and why.
type RefusedError struct {
	Env    string
	Op     state.Op
	Digest string
	Failed []GateResult
}

func (e *RefusedError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = fmt.Sprintf("gate %s: %s", f.Gate, f.Reason)
	}
	return fmt.Sprintf("%s of %s to %s refused by %s", e.Op, e.Digest, e.Env, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Refusal returns nil when every gate passed, else a user error (exit
// code 1) wrapping a *RefusedError, with a hint for each failed gate.
func Refusal(env string, op state.Op, digest, ref string, results []GateResult) error {
	var failed []GateResult
	var hints []string
	for _, r := range results {
		if r.Passed {
			continue
		}
		failed = append(failed, r)
		switch r.Gate {
		case GateHealthy:
			hints = append(hints, "wait until the source has been healthy long enough")
		case GateSignedBy, GateVerifyKey:
			hints = append(hints, "sign it with a trusted key: k2 sign "+ref+" --key <private key>")
		case GateApproval:
			hints = append(hints, fmt.Sprintf("approve it: k2 approve %s %s", env, digest))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return usererr.Wrap(usererr.KindFailure, &RefusedError{Env: env, Op: op, Digest: digest, Failed: failed},
		strings.Join(hints, "; ")+"; nothing was changed")
}
