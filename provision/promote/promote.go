package promote

import (
	"context"
	"fmt"
	"strings"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// Plan is what a promotion will do: 'k2 promote --dry-run' prints it. Its
// JSON shape is stable.
type Plan struct {
	From string `json:"from"`
	To   string `json:"to"`
	// SourceDeployment is the source's deployment whose artifact moves.
	SourceDeployment string `json:"sourceDeployment"`
	// Digest is the artifact's manifest digest: what the target will run.
	Digest string `json:"digest"`
	// SourceRef is where the source's artifact is, pinned to Digest.
	SourceRef string `json:"sourceRef"`
	// TargetRef is what the target deploys, pinned to Digest: in the
	// target's registry when it has one, else SourceRef.
	TargetRef string `json:"targetRef"`
	// Copy: the artifact and its referrers (signatures) are copied from
	// SourceRef to TargetRef first.
	Copy  bool         `json:"copy"`
	Gates []GateResult `json:"gates"`
	// Refused: a gate refused; nothing will change.
	Refused bool `json:"refused"`
	// Deploy is the target's deploy plan (values, machines, layers).
	Deploy *engine.Plan `json:"deploy,omitempty"`
}

// Err returns the refusal of p's failed gates (nil if none failed).
func (p *Plan) Err() error {
	return Refusal(p.To, state.OpPromote, p.Digest, p.SourceRef, p.Gates)
}

// Plan works out the promotion of from's artifact to to, checking every
// gate of to, without changing anything. The source must run an artifact
// and its newest deployment must have succeeded (a failed or unfinished
// one leaves it in no state worth promoting).
func (g *Gates) Plan(ctx context.Context, from, to string) (*Plan, error) {
	if from == to {
		return nil, usererr.Usage("--from and --to are both %s; promote from one environment to another", from)
	}
	src, err := g.State.GetEnv(ctx, from)
	if err != nil {
		return nil, engine.UserError(err)
	}
	dst, err := g.State.GetEnv(ctx, to)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindFailure, err,
			fmt.Sprintf("create it first with its own provider and values: k2 env create %s --provider …", to))
	}
	cur, last, err := engine.Current(ctx, g.State, from)
	if err != nil {
		return nil, err
	}
	if last.ID != cur.ID {
		return nil, usererr.New(usererr.KindFailure,
			"%s's last deployment %s (%s) is %s, so what it runs is not %s; finish it (k2 resume %s) or roll it back (k2 rollback %s) first",
			from, last.ID, last.Op, last.Result, engine.ShortDigest(cur.ArtifactDigest), from, from)
	}
	p := &Plan{From: from, To: to, SourceDeployment: cur.ID, Digest: cur.ArtifactDigest,
		SourceRef: artifact.PinnedRef(cur.ArtifactRef, cur.ArtifactDigest)}
	p.TargetRef = TargetRef(p.SourceRef, src.Registry, dst.Registry)
	p.Copy = repoOf(p.TargetRef) != repoOf(p.SourceRef)
	if p.Gates, err = g.Check(ctx, Subject{Env: dst, Op: state.OpPromote, Digest: p.Digest, Ref: p.SourceRef, From: from}); err != nil {
		return nil, err
	}
	if p.Gates == nil {
		p.Gates = []GateResult{}
	}
	for _, r := range p.Gates {
		if !r.Passed {
			p.Refused = true
		}
	}
	return p, nil
}

// TargetRef is where a promotion puts the artifact at sourceRef (pinned)
// for an environment with registry toReg: the same repository path under
// toReg, the source registry's own prefix (fromReg) or host taken off; with
// no toReg, sourceRef itself.
func TargetRef(sourceRef, fromReg, toReg string) string {
	if toReg == "" {
		return sourceRef
	}
	name, digest, _ := strings.Cut(sourceRef, "@")
	path := name
	if fromReg != "" && strings.HasPrefix(name, fromReg+"/") {
		path = strings.TrimPrefix(name, fromReg+"/")
	} else if host, rest := artifact.SplitRegistry(name); host != "" {
		path = rest
	}
	return toReg + "/" + path + "@" + digest
}

// repoOf is a reference without its tag or digest.
func repoOf(ref string) string {
	name, _, _ := strings.Cut(ref, "@")
	return name
}
