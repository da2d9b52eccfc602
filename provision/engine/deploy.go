package engine

import (
	"context"
	"errors"
	"fmt"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/state"
)

// PlanRequest are the inputs of PlanDeploy, as `k2 deploy` takes them.
type PlanRequest struct {
	Env string
	// Provider from --provider: it must match a stored environment's
	// provider; for an environment not created yet it names the provider
	// the deploy would create it with.
	Provider       string
	ArtifactRef    string
	ArtifactDigest string
	Config         *artifact.Config
	ValuesFile     string   // path, may be empty
	Sets           []string // key=value
}

// DeployEnv returns the environment a deploy of name would use: the stored
// one, or (exists false) an unsaved one with provider when it is not
// created yet. A --provider that contradicts the stored one is an error.
func DeployEnv(ctx context.Context, s *state.Store, name, provider string) (env *state.Environment, exists bool, err error) {
	e, err := s.GetEnv(ctx, name)
	switch {
	case err == nil:
		if provider != "" && provider != e.Provider {
			return nil, true, usererr.New(usererr.KindUsage,
				"environment %s uses provider %s, not %s; drop --provider, or create another environment with 'k2 env create <name> --provider %s'",
				name, e.Provider, provider, provider)
		}
		return e, true, nil
	case !errors.Is(err, state.ErrNotFound):
		return nil, false, err
	case provider == "":
		return nil, false, usererr.New(usererr.KindUsage,
			"environment %q does not exist; name its provider with --provider (e.g. --provider local), or create it with 'k2 env create %s --provider …'", name, name)
	}
	if err := state.ValidateEnvName(name); err != nil {
		return nil, false, UserError(err)
	}
	return &state.Environment{Name: name, UID: "not-created-yet", Provider: provider, Values: map[string]string{}}, false, nil
}

// PlanDeploy computes the plan of deploying an artifact to an environment
// without changing anything: what `k2 deploy --dry-run` prints. prov is the
// environment's provider (launched by cmd); nil skips capability checks.
func PlanDeploy(ctx context.Context, s *state.Store, req PlanRequest, prov Describer) (*Plan, error) {
	env, exists, err := DeployEnv(ctx, s, req.Env, req.Provider)
	if err != nil {
		return nil, err
	}
	var fileVals map[string]string
	if req.ValuesFile != "" {
		if fileVals, err = ReadValuesFile(req.ValuesFile); err != nil {
			return nil, err
		}
	}
	sets, _, err := ParseSets(req.Sets, false)
	if err != nil {
		return nil, err
	}
	o := PlanOptions{Env: env, ArtifactRef: req.ArtifactRef, ArtifactDigest: req.ArtifactDigest,
		Config: req.Config, ValuesFile: fileVals, Sets: sets}
	if prov != nil {
		d, err := prov.Describe(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("asking provider %s for its capabilities: %w", env.Provider, err)
		}
		o.Capabilities = &d.Capabilities
	}
	p, err := NewPlan(o)
	if err != nil {
		return nil, err
	}
	if !exists {
		for i := range p.Machines {
			p.Machines[i].RequestID = "" // fixed when the environment is created
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("environment %s does not exist yet: a deploy creates it with provider %s; its machines' request ids are fixed then", env.Name, env.Provider))
	}
	return p, nil
}
