package state

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Environment is a named place a cluster is deployed to: a provider, its
// configuration, and the ARG values used for every deploy there.
type Environment struct {
	Name string `json:"name"`
	// UID is random per creation; machine request ids derive from it, so a
	// destroyed and re-created environment never reuses a provider request id.
	UID      string `json:"uid"`
	Provider string `json:"provider"`
	// ProviderConfig is the provider plugin's configuration (a JSON object).
	ProviderConfig json.RawMessage `json:"providerConfig,omitempty"`
	// ProviderConfigRef says where ProviderConfig came from (a file), for people.
	ProviderConfigRef string            `json:"providerConfigRef,omitempty"`
	Values            map[string]string `json:"values"`
	// Registry is where promotions to this environment copy the artifact
	// first: a registry host with an optional repository prefix
	// (registry.example:5000/mirror); empty deploys from where the source
	// environment's artifact is.
	Registry string `json:"registry,omitempty"`
	// Policy holds the gates a promotion to this environment must pass.
	Policy    Policy    `json:"policy"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

var envNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// MaxEnvName bounds environment names: they prefix machine and host names.
const MaxEnvName = 40

// ValidateEnvName reports whether name can name an environment: lowercase
// letters, digits and '-', starting and ending alphanumeric, at most 40.
func ValidateEnvName(name string) error {
	if len(name) > MaxEnvName || !envNameRE.MatchString(name) {
		return fmt.Errorf("environment name %q: %w; use lowercase letters, digits and '-' (at most %d), e.g. prod or staging-eu",
			name, ErrInvalid, MaxEnvName)
	}
	return nil
}

// ValidateValueKey reports whether k can be an ARG value's key.
func ValidateValueKey(k string) error {
	if k == "" || strings.ContainsAny(k, "= \t\n${}") {
		return fmt.Errorf("value key %q: %w; keys are ARG names such as replicas", k, ErrInvalid)
	}
	return nil
}

// CreateEnv records a new environment. Name and Provider are required; UID,
// CreatedAt and UpdatedAt are set by the store. A taken name is ErrExists.
func (s *Store) CreateEnv(ctx context.Context, e Environment) (*Environment, error) {
	if err := ValidateEnvName(e.Name); err != nil {
		return nil, err
	}
	if e.Provider == "" {
		return nil, fmt.Errorf("environment %q: provider: %w; name one with --provider, e.g. --provider local", e.Name, ErrInvalid)
	}
	for k := range e.Values {
		if err := ValidateValueKey(k); err != nil {
			return nil, fmt.Errorf("environment %q: %w", e.Name, err)
		}
	}
	if err := checkProviderConfig(&e); err != nil {
		return nil, err
	}
	if e.Values == nil {
		e.Values = map[string]string{}
	}
	vals, err := json.Marshal(e.Values)
	if err != nil {
		return nil, err
	}
	if err := ValidateRegistry(e.Registry); err != nil {
		return nil, fmt.Errorf("environment %q: %w", e.Name, err)
	}
	pol, err := json.Marshal(e.Policy)
	if err != nil {
		return nil, err
	}
	uid := make([]byte, 8)
	if _, err := rand.Read(uid); err != nil {
		return nil, err
	}
	e.UID = hex.EncodeToString(uid)
	now := s.stamp()
	_, err = s.db.ExecContext(ctx, `INSERT INTO environments
		(name, uid, provider, provider_config, provider_ref, vals, registry, policy, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Name, e.UID, e.Provider, string(e.ProviderConfig), e.ProviderConfigRef, string(vals), e.Registry, string(pol), now, now)
	if err != nil {
		if isConstraint(err) {
			return nil, fmt.Errorf("environment %q: %w", e.Name, ErrExists)
		}
		return nil, fmt.Errorf("creating environment %q: %w", e.Name, err)
	}
	return s.GetEnv(ctx, e.Name)
}

// checkProviderConfig makes an empty provider config {} and refuses one
// that is not a JSON object.
func checkProviderConfig(e *Environment) error {
	if len(e.ProviderConfig) == 0 {
		e.ProviderConfig = json.RawMessage(`{}`)
	}
	var obj map[string]any
	if err := json.Unmarshal(e.ProviderConfig, &obj); err != nil {
		return fmt.Errorf("environment %q: provider config is not a JSON object: %w", e.Name, err)
	}
	return nil
}

const envCols = `name, uid, provider, provider_config, provider_ref, vals, registry, policy, created_at, updated_at`

// GetEnv returns the environment name, or ErrNotFound.
func (s *Store) GetEnv(ctx context.Context, name string) (*Environment, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+envCols+` FROM environments WHERE name = ?`, name)
	e, err := scanEnv(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("environment %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading environment %q: %w", name, err)
	}
	return e, nil
}

// ListEnvs returns every environment, sorted by name.
func (s *Store) ListEnvs(ctx context.Context) ([]Environment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+envCols+` FROM environments ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	defer rows.Close()
	out := []Environment{}
	for rows.Next() {
		e, err := scanEnv(rows)
		if err != nil {
			return nil, fmt.Errorf("listing environments: %w", err)
		}
		out = append(out, *e)
	}
	return out, rows.Err()
}

// SetEnvValues sets the values in set and removes the keys in unset, in one
// transaction, and returns the updated environment.
func (s *Store) SetEnvValues(ctx context.Context, name string, set map[string]string, unset []string) (*Environment, error) {
	for k := range set {
		if err := ValidateValueKey(k); err != nil {
			return nil, fmt.Errorf("environment %q: %w", name, err)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var raw string
		err := tx.QueryRowContext(ctx, `SELECT vals FROM environments WHERE name = ?`, name).Scan(&raw)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("environment %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		vals := map[string]string{}
		if err := json.Unmarshal([]byte(raw), &vals); err != nil {
			return fmt.Errorf("environment %q: stored values: %w", name, err)
		}
		for k, v := range set {
			vals[k] = v
		}
		for _, k := range unset {
			delete(vals, k)
		}
		b, err := json.Marshal(vals)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE environments SET vals = ?, updated_at = ? WHERE name = ?`, string(b), s.stamp(), name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("setting values of environment %q: %w", name, err)
	}
	return s.GetEnv(ctx, name)
}

// DeleteEnv removes an environment and, by cascade, its deployments,
// journal, machines and secrets. Missing is ErrNotFound.
func (s *Store) DeleteEnv(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM environments WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("deleting environment %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("environment %q: %w", name, ErrNotFound)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanEnv(r scanner) (*Environment, error) {
	var e Environment
	var cfg, vals, pol, created, updated string
	if err := r.Scan(&e.Name, &e.UID, &e.Provider, &cfg, &e.ProviderConfigRef, &vals, &e.Registry, &pol, &created, &updated); err != nil {
		return nil, err
	}
	e.ProviderConfig = json.RawMessage(cfg)
	e.Values = map[string]string{}
	if err := json.Unmarshal([]byte(vals), &e.Values); err != nil {
		return nil, fmt.Errorf("environment %q: stored values: %w", e.Name, err)
	}
	if err := json.Unmarshal([]byte(pol), &e.Policy); err != nil {
		return nil, fmt.Errorf("environment %q: stored policy: %w", e.Name, err)
	}
	e.CreatedAt, e.UpdatedAt = parseTime(created), parseTime(updated)
	return &e, nil
}

// SortedKeys returns m's keys in order, for stable output.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isConstraint reports a UNIQUE or PRIMARY KEY violation.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// isForeignKey reports a FOREIGN KEY violation.
func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
