package common

import (
	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
	"k2.dev/k2/tui/backend"
)

// Choices are what the user picked, page by page.
type Choices struct {
	// Artifact is the artifact to deploy and Signature its status.
	Artifact  *artifact.Artifact
	Signature sign.Summary
	// Env names the environment; EnvRecord is it when it exists already
	// (nil: the deploy creates it with Provider and ProviderConfig).
	Env       string
	EnvRecord *state.Environment
	Provider  *host.Info
	// ProviderConfig is the provider settings of a new environment.
	ProviderConfig sdk.Config
	// Sets are the ARG values the user gave (like --set).
	Sets map[string]string
	// Plan is the reviewed plan; ProviderWarnings the warnings of the
	// provider's Validate.
	Plan             *engine.Plan
	ProviderWarnings []string
	// Resume: the deploy continues the environment's unfinished one
	// (k2 install --resume ENV), whose op is Op.
	Resume bool
	Op     state.Op
}

// PlanRequest returns the inputs of the plan the choices make.
func (c *Choices) PlanRequest() backend.PlanRequest {
	r := backend.PlanRequest{Env: c.Env, Artifact: c.Artifact, Sets: c.Sets}
	if c.Provider != nil {
		r.Provider = c.Provider.Name
	}
	return r
}
