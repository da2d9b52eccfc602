package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
)

// CheckCapabilities tells, before the ARG values are complete, whether a
// provider with capabilities o.Capabilities can make the machines o.Config
// asks for in o.Env: nil, or a KindProvider error joining a
// *CapabilityError per problem (what NewPlan would report). Pools whose
// count, size or arch use an ARG that has no value yet cannot be checked
// and are left out; every other problem of the inputs (a missing ARG, a
// bad template) is not the provider's and is left to NewPlan. The
// installer uses it to grey out providers before asking for settings.
func CheckCapabilities(o PlanOptions) error {
	if o.Env == nil || o.Config == nil || o.Capabilities == nil {
		return errors.New("checking capabilities: Env, Config and Capabilities are required")
	}
	known := map[string]string{}
	for _, a := range o.Config.Args {
		if a.Default != nil {
			known[a.Name] = *a.Default
		}
	}
	for _, m := range []map[string]string{o.Env.Values, o.ValuesFile, o.Sets} {
		maps.Copy(known, m)
	}
	cfg := *o.Config
	cfg.Machines = nil
	for _, mp := range o.Config.Machines {
		if expandable(known, mp.Count, mp.CPU, mp.Memory, mp.Disk, mp.Arch) {
			cfg.Machines = append(cfg.Machines, mp)
		}
	}
	if len(cfg.Machines) == 0 && len(o.Config.Machines) > 0 {
		return nil // nothing can be checked yet
	}
	// Give the ARGs still without a value a stand-in: no checked pool uses
	// them, and nothing but the pools is checked.
	sets := maps.Clone(o.Sets)
	if sets == nil {
		sets = map[string]string{}
	}
	for _, a := range o.Config.Args {
		if _, ok := known[a.Name]; !ok {
			sets[a.Name] = ""
		}
	}
	cfg.Apps = nil
	o.Config, o.Sets = &cfg, sets
	_, err := NewPlan(o)
	if errs := capabilityErrors(err); len(errs) > 0 {
		return usererr.Wrap(usererr.KindProvider, errors.Join(errs...),
			fmt.Sprintf("change MACHINES (or the ARGs it uses) or pick another provider ('k2 plugin describe %s')", o.Env.Provider))
	}
	return nil
}

// expandable reports whether every template expands with values.
func expandable(values map[string]string, templates ...string) bool {
	for _, t := range templates {
		if _, err := k8sfile.Expand(t, values); err != nil {
			return false
		}
	}
	return true
}

// capabilityErrors returns the *CapabilityErrors in err's tree.
func capabilityErrors(err error) []error {
	switch x := err.(type) { //nolint:errorlint // walks the tree itself
	case nil:
		return nil
	case *CapabilityError:
		return []error{x}
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range x.Unwrap() {
			out = append(out, capabilityErrors(e)...)
		}
		return out
	}
	return capabilityErrors(errors.Unwrap(err))
}

// Validator is the part of a provider that checks its inputs.
type Validator interface {
	Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error)
}

// ValidateProvider asks the provider whether it would accept a deploy of
// plan p with provider configuration cfg: cfg and one machine of each of
// the plan's pools (a deploy asks for its machines one at a time; the
// bootstrap payload does not exist before the deploy, and its method was
// checked by the plan). The diagnostics (paths such as config.stateDir
// or machines[0].arch, the machine's pool named in the summary) are what
// a user must fix; an error means the call itself failed.
func ValidateProvider(ctx context.Context, v Validator, cfg sdk.Config, p *Plan) (sdk.Diagnostics, error) {
	req := &sdk.ValidateRequest{Config: cfg}
	var pools []string
	seen := map[string]bool{}
	for _, m := range p.Machines {
		if !seen[m.Pool] {
			seen[m.Pool] = true
			pools = append(pools, m.Pool)
			req.Machines = append(req.Machines, m.Request())
		}
	}
	resp, err := v.Validate(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("asking provider %s to validate the settings: %w", p.Provider, err)
	}
	ds := make(sdk.Diagnostics, 0, len(resp.Diagnostics))
	for _, d := range resp.Diagnostics {
		var i int
		if n, _ := fmt.Sscanf(d.Path, "machines[%d]", &i); n == 1 && i >= 0 && i < len(pools) && !strings.Contains(d.Summary, pools[i]) {
			d.Summary = "pool " + pools[i] + ": " + d.Summary
		}
		ds = append(ds, d)
	}
	return ds, nil
}
