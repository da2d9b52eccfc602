package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/state"
)

// EnvCreateOptions are the inputs of `k2 env create`. Zero values mean none.
type EnvCreateOptions struct {
	Name     string
	Provider string
	// Sets are key=value ARG values; they win over ValuesFile.
	Sets       []string
	ValuesFile string
	// ProviderConfigFile is a YAML or JSON object handed to the provider.
	ProviderConfigFile string
	// Registry is where promotions to the environment copy artifacts.
	Registry string
}

// CreateEnv records a new environment. Errors are user errors: a taken
// name, a bad name, an unreadable values or config file.
func CreateEnv(ctx context.Context, s *state.Store, o EnvCreateOptions) (*state.Environment, error) {
	vals := map[string]string{}
	if o.ValuesFile != "" {
		v, err := ReadValuesFile(o.ValuesFile)
		if err != nil {
			return nil, err
		}
		vals = v
	}
	set, _, err := ParseSets(o.Sets, false)
	if err != nil {
		return nil, err
	}
	for k, v := range set {
		vals[k] = v
	}
	e := state.Environment{Name: o.Name, Provider: o.Provider, Values: vals, Registry: o.Registry}
	if o.ProviderConfigFile != "" {
		if e.ProviderConfig, e.ProviderConfigRef, err = readProviderConfig(o.ProviderConfigFile); err != nil {
			return nil, err
		}
	}
	created, err := s.CreateEnv(ctx, e)
	return created, UserError(err)
}

// readProviderConfig reads a provider config file and returns it with the
// file's absolute path (what `k2 env show` names).
func readProviderConfig(file string) (json.RawMessage, string, error) {
	cfg, err := ReadConfigFile(file)
	if err != nil {
		return nil, "", err
	}
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	return cfg, file, nil
}

// SetProviderConfig replaces environment name's provider config with the
// file's (`k2 env set --provider-config`): the next deploy, status or
// destroy hands it to the provider. Machines already made are not changed.
func SetProviderConfig(ctx context.Context, s *state.Store, name, file string) (*state.Environment, error) {
	cfg, ref, err := readProviderConfig(file)
	if err != nil {
		return nil, err
	}
	e, err := s.UpdateEnv(ctx, name, func(e *state.Environment) error {
		e.ProviderConfig, e.ProviderConfigRef = cfg, ref
		return nil
	})
	return e, UserError(err)
}

// SetEnvValues applies `k2 env set` arguments (key=value, or key- to
// remove) to environment name and returns it.
func SetEnvValues(ctx context.Context, s *state.Store, name string, args []string) (*state.Environment, error) {
	set, unset, err := ParseSets(args, true)
	if err != nil {
		return nil, err
	}
	e, err := s.SetEnvValues(ctx, name, set, unset)
	return e, UserError(err)
}

// EnvDetail is what `k2 env show` reports.
type EnvDetail struct {
	state.Environment
	Machines []state.Machine `json:"machines"`
	// Last is the newest deployment, nil if there was none.
	Last *state.Deployment `json:"lastDeployment,omitempty"`
	// Lock is who holds the deploy lock now, nil if nobody.
	Lock *LockInfo `json:"lock,omitempty"`
	// Approvals of digests for this environment, newest first.
	Approvals []state.Approval `json:"approvals"`
}

// LockInfo is a lock holder as reported to users.
type LockInfo struct {
	state.LockHolder
	// Stale: the holder process is gone; the next deploy takes the lock over.
	Stale bool `json:"stale,omitempty"`
}

// DescribeEnv gathers an environment with its machines, last deployment and lock.
func DescribeEnv(ctx context.Context, s *state.Store, name string) (*EnvDetail, error) {
	e, err := s.GetEnv(ctx, name)
	if err != nil {
		return nil, UserError(err)
	}
	d := &EnvDetail{Environment: *e}
	if d.Machines, err = s.ListMachines(ctx, name); err != nil {
		return nil, err
	}
	last, err := s.LatestDeployment(ctx, name)
	switch {
	case err == nil:
		d.Last = last
	case !errors.Is(err, state.ErrNotFound):
		return nil, err
	}
	if d.Approvals, err = s.Approvals(ctx, name, ""); err != nil {
		return nil, err
	}
	h, stale, err := s.LockHolderOf(ctx, name)
	switch {
	case err == nil:
		d.Lock = &LockInfo{LockHolder: *h, Stale: stale}
	case !errors.Is(err, state.ErrNotFound):
		return nil, err
	}
	return d, nil
}

// History returns env's deployments, newest first (limit 0: all).
func History(ctx context.Context, s *state.Store, env string, limit int) ([]state.Deployment, error) {
	h, err := s.History(ctx, env, limit)
	return h, UserError(err)
}

// UserError marks the state store's errors that a user can act on with the
// right exit code and a hint; other errors pass through unchanged.
func UserError(err error) error {
	var ue *usererr.Error
	var le *state.LockedError
	switch {
	case err == nil || errors.As(err, &ue):
		return err
	case errors.As(err, &le):
		return usererr.Wrap(usererr.KindFailure, err,
			fmt.Sprintf("wait for it to finish; if that process is gone for good (another host), run 'k2 env unlock %s'", le.Env))
	case errors.Is(err, state.ErrNotFound):
		return usererr.Wrap(usererr.KindFailure, err, "see 'k2 env ls'")
	case errors.Is(err, state.ErrExists):
		return usererr.Wrap(usererr.KindFailure, err, "pick another name, or change it with 'k2 env set'")
	case errors.Is(err, state.ErrInvalid):
		return usererr.Wrap(usererr.KindUsage, err, "")
	case errors.Is(err, state.ErrSchemaTooNew):
		return usererr.Wrap(usererr.KindFailure, err, "")
	case errors.Is(err, state.ErrWrongKey):
		return usererr.Wrap(usererr.KindFailure, err, "restore $K2_HOME/state.key from a backup")
	}
	return err
}
