package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// StepState is where a journaled step stands.
type StepState string

// Step states. A step killed while running stays Started: on resume it runs
// again (with Attempt+1), so steps must be idempotent.
const (
	StepStarted StepState = "started"
	StepDone    StepState = "done"
	StepFailed  StepState = "failed"
	StepCleaned StepState = "cleaned"
)

// StepRecord is one journal entry: a step of a deployment, or one item of a
// step (Key: a machine name, a layer) that is journaled on its own.
type StepRecord struct {
	DeploymentID string          `json:"deploymentId"`
	Step         string          `json:"step"`
	Key          string          `json:"key,omitempty"`
	State        StepState       `json:"state"`
	Attempt      int             `json:"attempt"`
	StartedAt    time.Time       `json:"startedAt"`
	FinishedAt   time.Time       `json:"finishedAt,omitzero"`
	Output       json.RawMessage `json:"output,omitempty"`
	Error        string          `json:"error,omitempty"`
}

// StepStarted journals that (step, key) of deployment dep is starting and
// returns the entry with its attempt number (1 the first time).
func (s *Store) StepStarted(ctx context.Context, dep, step, key string) (*StepRecord, error) {
	now := s.stamp()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO steps (deployment_id, step, key, state, attempt, seq, started_at)
			VALUES (?, ?, ?, ?, 1, (SELECT coalesce(max(seq), 0) + 1 FROM steps WHERE deployment_id = ?), ?)
			ON CONFLICT (deployment_id, step, key) DO UPDATE SET
				state = excluded.state, attempt = attempt + 1, started_at = excluded.started_at,
				finished_at = NULL, error = ''`,
			dep, step, key, string(StepStarted), dep, now)
		return err
	})
	if err != nil {
		if isForeignKey(err) {
			return nil, fmt.Errorf("journaling step %s: deployment %s: %w", step, dep, ErrNotFound)
		}
		return nil, fmt.Errorf("journaling step %s: %w", step, err)
	}
	return s.Step(ctx, dep, step, key)
}

// StepDone journals that (step, key) finished; output (JSON, may be nil) is
// kept for resume.
func (s *Store) StepDone(ctx context.Context, dep, step, key string, output json.RawMessage) error {
	if len(output) == 0 {
		output = json.RawMessage("null")
	}
	return s.finishStep(ctx, dep, step, key, StepDone, string(output), "")
}

// StepFailed journals that (step, key) failed with errMsg.
func (s *Store) StepFailed(ctx context.Context, dep, step, key, errMsg string) error {
	return s.finishStep(ctx, dep, step, key, StepFailed, "", errMsg)
}

// StepCleaned journals that (step, key) was undone by its cleanup.
func (s *Store) StepCleaned(ctx context.Context, dep, step, key string) error {
	return s.finishStep(ctx, dep, step, key, StepCleaned, "", "")
}

func (s *Store) finishStep(ctx context.Context, dep, step, key string, st StepState, output, errMsg string) error {
	q := `UPDATE steps SET state = ?, finished_at = ?, error = ?`
	args := []any{string(st), s.stamp(), errMsg}
	if output != "" {
		q += `, output = ?`
		args = append(args, output)
	}
	q += ` WHERE deployment_id = ? AND step = ? AND key = ?`
	args = append(args, dep, step, key)
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("journaling step %s %s: %w", step, st, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("journaling step %s %s: never started: %w", step, st, ErrNotFound)
	}
	return nil
}

const stepCols = `deployment_id, step, key, state, attempt, started_at, finished_at, output, error`

// Step returns the journal entry for (step, key), or ErrNotFound.
func (s *Store) Step(ctx context.Context, dep, step, key string) (*StepRecord, error) {
	r, err := scanStep(s.db.QueryRowContext(ctx,
		`SELECT `+stepCols+` FROM steps WHERE deployment_id = ? AND step = ? AND key = ?`, dep, step, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("step %s %s of deployment %s: %w", step, key, dep, ErrNotFound)
	}
	return r, err
}

// Journal returns every entry of deployment dep in the order they first started.
func (s *Store) Journal(ctx context.Context, dep string) ([]StepRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+stepCols+` FROM steps WHERE deployment_id = ? ORDER BY seq`, dep)
	if err != nil {
		return nil, fmt.Errorf("reading journal of %s: %w", dep, err)
	}
	defer rows.Close()
	out := []StepRecord{}
	for rows.Next() {
		r, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("reading journal of %s: %w", dep, err)
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

func scanStep(r scanner) (*StepRecord, error) {
	var rec StepRecord
	var st, started, output string
	var finished sql.NullString
	if err := r.Scan(&rec.DeploymentID, &rec.Step, &rec.Key, &st, &rec.Attempt, &started, &finished, &output, &rec.Error); err != nil {
		return nil, err
	}
	rec.State = StepState(st)
	rec.StartedAt, rec.FinishedAt = parseTime(started), nullTime(finished)
	if output != "null" && output != "" {
		rec.Output = json.RawMessage(output)
	}
	return &rec, nil
}
