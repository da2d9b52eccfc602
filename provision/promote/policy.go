package promote

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// gateHint teaches the --gate syntax.
const gateHint = "write healthy=10m, signed-by=KEY.pub (repeatable), approval, NAME- to remove one, or none"

// ApplyGates edits pol with 'k2 env set --gate' arguments:
//
//	healthy=DURATION     the source must have been healthy this long (healthy-for= too)
//	signed-by=FILE       a valid signature by this public key (repeat for more keys: any of them)
//	approval             someone must 'k2 approve ENV DIGEST' first (approval=false turns it off)
//	NAME-                removes gate NAME (signed-by- removes every key)
//	none                 removes every gate
func ApplyGates(pol *state.Policy, args []string) error {
	for _, a := range args {
		name, val, hasVal := strings.Cut(a, "=")
		if !hasVal && strings.HasSuffix(name, "-") {
			switch strings.TrimSuffix(name, "-") {
			case GateHealthy, "healthy-for":
				pol.HealthyFor = state.Duration{}
			case GateSignedBy:
				pol.SignedBy = nil
			case GateApproval:
				pol.Approval = false
			default:
				return usererr.New(usererr.KindUsage, "--gate %s: unknown gate; %s", a, gateHint)
			}
			continue
		}
		switch name {
		case "none":
			*pol = state.Policy{}
		case GateHealthy, "healthy-for":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return usererr.New(usererr.KindUsage, "--gate %s: %q is not a positive duration such as 90s or 10m", a, val)
			}
			pol.HealthyFor = state.Duration{Duration: d}
		case GateSignedBy:
			if val == "" {
				return usererr.New(usererr.KindUsage, "--gate %s: name a public key file, e.g. signed-by=release.pub", a)
			}
			if err := addKey(pol, val); err != nil {
				return err
			}
		case GateApproval:
			on := true
			if hasVal {
				b, err := strconv.ParseBool(val)
				if err != nil {
					return usererr.New(usererr.KindUsage, "--gate %s: write approval or approval=false", a)
				}
				on = b
			}
			pol.Approval = on
		default:
			return usererr.New(usererr.KindUsage, "--gate %s: unknown gate %q; %s", a, name, gateHint)
		}
	}
	return nil
}

// addKey reads a public key file into pol's signed-by gate (once per key).
func addKey(pol *state.Policy, path string) error {
	k, err := sign.LoadPublicKey(path)
	if err != nil {
		return err
	}
	for _, tk := range pol.SignedBy {
		if tk.ID == k.ID {
			return nil
		}
	}
	src := path
	if abs, err := filepath.Abs(path); err == nil {
		src = abs
	}
	pol.SignedBy = append(pol.SignedBy, state.TrustedKey{ID: k.ID, Source: src, PEM: k.PEM()})
	return nil
}

// policyFile is the YAML or JSON shape of 'k2 env set --policy FILE'.
type policyFile struct {
	// HealthyFor is a duration: "10m".
	HealthyFor string `json:"healthyFor,omitempty"`
	// SignedBy are public key files, relative to the policy file.
	SignedBy []string `json:"signedBy,omitempty"`
	Approval bool     `json:"approval,omitempty"`
}

// ReadPolicyFile reads a policy file (YAML or JSON), which replaces an
// environment's gates as a whole:
//
//	healthyFor: 10m
//	signedBy: [keys/release.pub]
//	approval: true
func ReadPolicyFile(path string) (state.Policy, error) {
	var pol state.Policy
	b, err := os.ReadFile(path)
	if err != nil {
		return pol, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading policy: %w", err), "")
	}
	var pf policyFile
	if err := sigsyaml.UnmarshalStrict(b, &pf); err != nil {
		return pol, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", path, err),
			"a policy file has healthyFor (a duration), signedBy (public key files) and approval (true/false)")
	}
	if pf.HealthyFor != "" {
		d, err := time.ParseDuration(pf.HealthyFor)
		if err != nil || d <= 0 {
			return pol, usererr.New(usererr.KindInvalid, "%s: healthyFor %q is not a positive duration such as 10m", path, pf.HealthyFor)
		}
		pol.HealthyFor = state.Duration{Duration: d}
	}
	for _, k := range pf.SignedBy {
		if !filepath.IsAbs(k) {
			k = filepath.Join(filepath.Dir(path), k)
		}
		if err := addKey(&pol, k); err != nil {
			return pol, fmt.Errorf("%s: signedBy: %w", path, err)
		}
	}
	pol.Approval = pf.Approval
	return pol, nil
}

// Describe lists pol's gates for people, one per line.
func Describe(pol state.Policy) []string {
	var out []string
	if pol.HealthyFor.Duration > 0 {
		out = append(out, fmt.Sprintf("%s: the source healthy for %s", GateHealthy, pol.HealthyFor.Duration))
	}
	for _, k := range pol.SignedBy {
		pk := &sign.PublicKey{ID: k.ID, Source: k.Source}
		out = append(out, fmt.Sprintf("%s: %s", GateSignedBy, pk))
	}
	if pol.Approval {
		out = append(out, GateApproval+": k2 approve ENV DIGEST first")
	}
	return out
}

// Settings are the promotion settings 'k2 env set' changes; zero fields
// change nothing.
type Settings struct {
	// Registry, when not nil, replaces the registry ("" removes it).
	Registry *string
	// PolicyFile replaces every gate with the file's.
	PolicyFile string
	// Gates edit the gates (after PolicyFile), see ApplyGates.
	Gates []string
}

// IsZero reports whether s changes nothing.
func (s Settings) IsZero() bool { return s.Registry == nil && s.PolicyFile == "" && len(s.Gates) == 0 }

// Configure applies s to environment name in one transaction.
func Configure(ctx context.Context, st *state.Store, name string, s Settings) (*state.Environment, error) {
	var pol *state.Policy
	if s.PolicyFile != "" {
		p, err := ReadPolicyFile(s.PolicyFile)
		if err != nil {
			return nil, err
		}
		pol = &p
	}
	e, err := st.UpdateEnv(ctx, name, func(e *state.Environment) error {
		if s.Registry != nil {
			e.Registry = *s.Registry
		}
		if pol != nil {
			e.Policy = *pol
		}
		return ApplyGates(&e.Policy, s.Gates)
	})
	return e, engine.UserError(err)
}
