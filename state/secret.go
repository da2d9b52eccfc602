package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Names of the secrets k2 keeps per environment.
const (
	SecretKubeconfig = "kubeconfig"
	SecretJoinToken  = "join-token"
)

// PutSecret stores value as secret name of env, encrypted with the state key
// (AES-256-GCM, bound to env and name).
func (s *Store) PutSecret(ctx context.Context, env, name string, value []byte) error {
	sealed, err := seal(s.key, value, secretAAD(env, name))
	if err != nil {
		return fmt.Errorf("encrypting secret %s of %q: %w", name, env, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO secrets (env, name, sealed, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (env, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
		env, name, sealed, s.stamp())
	if err != nil {
		if isForeignKey(err) {
			return fmt.Errorf("storing secret %s: environment %q: %w", name, env, ErrNotFound)
		}
		return fmt.Errorf("storing secret %s of %q: %w", name, env, err)
	}
	return nil
}

// GetSecret returns secret name of env, decrypted. Missing is ErrNotFound; a
// state.key that does not match is ErrWrongKey.
func (s *Store) GetSecret(ctx context.Context, env, name string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, `SELECT sealed FROM secrets WHERE env = ? AND name = ?`, env, name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("secret %s of %q: %w", name, env, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %s of %q: %w", name, env, err)
	}
	plain, err := unseal(s.key, sealed, secretAAD(env, name))
	if err != nil {
		return nil, fmt.Errorf("reading secret %s of %q: %w", name, env, err)
	}
	return plain, nil
}

// DeleteSecret removes secret name of env; missing is not an error.
func (s *Store) DeleteSecret(ctx context.Context, env, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM secrets WHERE env = ? AND name = ?`, env, name); err != nil {
		return fmt.Errorf("deleting secret %s of %q: %w", name, env, err)
	}
	return nil
}

func secretAAD(env, name string) []byte { return []byte("k2/secret/" + env + "/" + name) }
