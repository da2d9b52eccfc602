package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MachineState is what k2 last knew of a machine.
type MachineState string

// Machine states.
const (
	MachineRequested MachineState = "requested" // asked of the provider, no answer recorded yet
	MachineCreated   MachineState = "created"   // the provider returned its id
	MachineReady     MachineState = "ready"     // joined the cluster
	MachineDeleting  MachineState = "deleting"
	MachineDeleted   MachineState = "deleted"
)

// Machine is a machine k2 asked a provider for.
type Machine struct {
	Env  string `json:"env"`
	Name string `json:"name"`
	// RequestID is the idempotency key given to the provider: asking twice
	// with one id yields one machine.
	RequestID  string       `json:"requestId"`
	ProviderID string       `json:"providerId,omitempty"`
	Pool       string       `json:"pool"`
	Role       string       `json:"role"`
	Addresses  []string     `json:"addresses"`
	State      MachineState `json:"state"`
	CreatedAt  time.Time    `json:"createdAt"`
	UpdatedAt  time.Time    `json:"updatedAt"`
}

// PutMachine inserts or updates machine (m.Env, m.Name). CreatedAt is kept
// from the first insert.
func (s *Store) PutMachine(ctx context.Context, m Machine) error {
	if m.Addresses == nil {
		m.Addresses = []string{}
	}
	addrs, err := json.Marshal(m.Addresses)
	if err != nil {
		return err
	}
	now := s.stamp()
	_, err = s.db.ExecContext(ctx, `INSERT INTO machines
		(env, name, request_id, provider_id, pool, role, addresses, state, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (env, name) DO UPDATE SET
			request_id = excluded.request_id, provider_id = excluded.provider_id, pool = excluded.pool,
			role = excluded.role, addresses = excluded.addresses, state = excluded.state,
			updated_at = excluded.updated_at`,
		m.Env, m.Name, m.RequestID, m.ProviderID, m.Pool, m.Role, string(addrs), string(m.State), now, now)
	if err != nil {
		if isForeignKey(err) {
			return fmt.Errorf("recording machine %s: environment %q: %w", m.Name, m.Env, ErrNotFound)
		}
		return fmt.Errorf("recording machine %s: %w", m.Name, err)
	}
	return nil
}

const machineCols = `env, name, request_id, provider_id, pool, role, addresses, state, created_at, updated_at`

// GetMachine returns machine name of env, or ErrNotFound.
func (s *Store) GetMachine(ctx context.Context, env, name string) (*Machine, error) {
	m, err := scanMachine(s.db.QueryRowContext(ctx,
		`SELECT `+machineCols+` FROM machines WHERE env = ? AND name = ?`, env, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("machine %s of %q: %w", name, env, ErrNotFound)
	}
	return m, err
}

// ListMachines returns env's machines sorted by name.
func (s *Store) ListMachines(ctx context.Context, env string) ([]Machine, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+machineCols+` FROM machines WHERE env = ? ORDER BY name`, env)
	if err != nil {
		return nil, fmt.Errorf("listing machines of %q: %w", env, err)
	}
	defer rows.Close()
	out := []Machine{}
	for rows.Next() {
		m, err := scanMachine(rows)
		if err != nil {
			return nil, fmt.Errorf("listing machines of %q: %w", env, err)
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

// DeleteMachine forgets machine name of env; missing is ErrNotFound.
func (s *Store) DeleteMachine(ctx context.Context, env, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM machines WHERE env = ? AND name = ?`, env, name)
	if err != nil {
		return fmt.Errorf("deleting machine %s of %q: %w", name, env, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("machine %s of %q: %w", name, env, ErrNotFound)
	}
	return nil
}

func scanMachine(r scanner) (*Machine, error) {
	var m Machine
	var addrs, st, created, updated string
	if err := r.Scan(&m.Env, &m.Name, &m.RequestID, &m.ProviderID, &m.Pool, &m.Role, &addrs, &st, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(addrs), &m.Addresses); err != nil {
		return nil, fmt.Errorf("machine %s: stored addresses: %w", m.Name, err)
	}
	m.State = MachineState(st)
	m.CreatedAt, m.UpdatedAt = parseTime(created), parseTime(updated)
	return &m, nil
}
