package state

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Op is what a deployment does to its environment.
type Op string

// Ops.
const (
	OpDeploy  Op = "deploy"
	OpUpgrade Op = "upgrade"
	OpDestroy Op = "destroy"
	// OpPromote deploys the digest another environment (Source) runs.
	OpPromote Op = "promote"
	// OpRollback re-deploys an earlier deployment (Source) with its values.
	OpRollback Op = "rollback"
	// OpMigrate deploys the digest another environment (Source) runs, with
	// its values and its cluster's state restored from a backup.
	OpMigrate Op = "migrate"
)

// Deploys reports whether op puts an artifact on the environment (every op
// but destroy).
func (op Op) Deploys() bool { return op != OpDestroy && op != "" }

// Result is a deployment's outcome.
type Result string

// Results. A deployment is Running from Begin until Finish; one that stays
// Running without a live lock holder was killed and can be resumed.
const (
	Running     Result = "running"
	Succeeded   Result = "succeeded"
	Failed      Result = "failed"
	Interrupted Result = "interrupted"
	RolledBack  Result = "rolled-back"
)

// Deployment is one run of deploy, upgrade, promote, rollback or destroy
// against an environment; the list of them is the environment's history.
type Deployment struct {
	ID             string `json:"id"`
	Env            string `json:"env"`
	Op             Op     `json:"op"`
	ArtifactRef    string `json:"artifactRef,omitempty"`
	ArtifactDigest string `json:"artifactDigest,omitempty"`
	// Values are the ARG values the deployment resolved (every ARG, after
	// defaults, environment values, --values and --set); a rollback to it
	// deploys with exactly these. ValuesHash is ValuesHash(Values).
	Values     map[string]string `json:"values,omitempty"`
	ValuesHash string            `json:"valuesHash,omitempty"`
	// Actor is who ran it (Actor()).
	Actor string `json:"actor,omitempty"`
	// Source: for a promotion the environment it came from, for a
	// rollback the deployment it restored.
	Source     string    `json:"source,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Result     Result    `json:"result"`
	Error      string    `json:"error,omitempty"`
}

// BeginDeployment records a new Running deployment of d.Op (default deploy)
// on d.Env and returns it with its ID and StartedAt set; Actor defaults to
// Actor() and ValuesHash is computed from Values.
func (s *Store) BeginDeployment(ctx context.Context, d Deployment) (*Deployment, error) {
	if d.Op == "" {
		d.Op = OpDeploy
	}
	if d.Actor == "" {
		d.Actor = Actor()
	}
	vals, hash, err := encodeValues(d.Values)
	if err != nil {
		return nil, err
	}
	if d.Values != nil {
		d.ValuesHash = hash
	}
	now := s.now().UTC()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	// Sortable and readable: d-20261125T142751-1a2b3c.
	d.ID = "d-" + now.Format("20060102T150405") + "-" + hex.EncodeToString(b)
	d.StartedAt, d.Result, d.FinishedAt, d.Error = now, Running, time.Time{}, ""
	_, err = s.db.ExecContext(ctx, `INSERT INTO deployments
		(id, env, op, artifact_ref, artifact_digest, vals, values_hash, actor, source, started_at, result)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.Env, string(d.Op), d.ArtifactRef, d.ArtifactDigest, vals, d.ValuesHash, d.Actor, d.Source, fmtTime(now), string(d.Result))
	if err != nil {
		if isForeignKey(err) {
			return nil, fmt.Errorf("environment %q: %w; create it with 'k2 env create %s --provider …'", d.Env, ErrNotFound, d.Env)
		}
		return nil, fmt.Errorf("recording deployment on %q: %w", d.Env, err)
	}
	return &d, nil
}

// FinishDeployment records a deployment's result; errMsg is the error shown
// in history ("" on success).
func (s *Store) FinishDeployment(ctx context.Context, id string, r Result, errMsg string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deployments SET result = ?, error = ?, finished_at = ? WHERE id = ?`,
		string(r), errMsg, s.stamp(), id)
	if err != nil {
		return fmt.Errorf("recording result of deployment %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("deployment %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetDeploymentDigest records the artifact digest once it is known (after the pull).
func (s *Store) SetDeploymentDigest(ctx context.Context, id, digest string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE deployments SET artifact_digest = ? WHERE id = ?`, digest, id)
	if err != nil {
		return fmt.Errorf("recording digest of deployment %s: %w", id, err)
	}
	return nil
}

// SetDeploymentValues records the ARG values a deployment resolved (known
// once it is planned) and their hash.
func (s *Store) SetDeploymentValues(ctx context.Context, id string, values map[string]string) error {
	vals, hash, err := encodeValues(values)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE deployments SET vals = ?, values_hash = ? WHERE id = ?`, vals, hash, id)
	if err != nil {
		return fmt.Errorf("recording values of deployment %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("deployment %s: %w", id, ErrNotFound)
	}
	return nil
}

func encodeValues(v map[string]string) (string, string, error) {
	if v == nil {
		return "{}", "", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", "", err
	}
	return string(b), ValuesHash(v), nil
}

const depCols = `id, env, op, artifact_ref, artifact_digest, vals, values_hash, actor, source, started_at, finished_at, result, error`

// GetDeployment returns deployment id, or ErrNotFound.
func (s *Store) GetDeployment(ctx context.Context, id string) (*Deployment, error) {
	d, err := scanDeployment(s.db.QueryRowContext(ctx, `SELECT `+depCols+` FROM deployments WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("deployment %s: %w", id, ErrNotFound)
	}
	return d, err
}

// LatestDeployment returns env's most recent deployment, or ErrNotFound if it
// has none. A Running result there, with no live lock holder, is a deploy
// that was killed: resume it by running its steps again with its ID.
func (s *Store) LatestDeployment(ctx context.Context, env string) (*Deployment, error) {
	d, err := scanDeployment(s.db.QueryRowContext(ctx,
		`SELECT `+depCols+` FROM deployments WHERE env = ? ORDER BY started_at DESC, id DESC LIMIT 1`, env))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("deployments of %q: %w", env, ErrNotFound)
	}
	return d, err
}

// History returns env's deployments, newest first, at most limit (0: all).
// An unknown environment is ErrNotFound.
func (s *Store) History(ctx context.Context, env string, limit int) ([]Deployment, error) {
	if _, err := s.GetEnv(ctx, env); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT `+depCols+` FROM deployments WHERE env = ? ORDER BY started_at DESC, id DESC LIMIT ?`, env, limit)
	if err != nil {
		return nil, fmt.Errorf("reading history of %q: %w", env, err)
	}
	defer rows.Close()
	out := []Deployment{}
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("reading history of %q: %w", env, err)
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

func scanDeployment(r scanner) (*Deployment, error) {
	var d Deployment
	var op, vals, started, result string
	var finished sql.NullString
	if err := r.Scan(&d.ID, &d.Env, &op, &d.ArtifactRef, &d.ArtifactDigest, &vals, &d.ValuesHash, &d.Actor, &d.Source,
		&started, &finished, &result, &d.Error); err != nil {
		return nil, err
	}
	if d.ValuesHash != "" {
		if err := json.Unmarshal([]byte(vals), &d.Values); err != nil {
			return nil, fmt.Errorf("deployment %s: stored values: %w", d.ID, err)
		}
	}
	d.Op, d.Result = Op(op), Result(result)
	d.StartedAt, d.FinishedAt = parseTime(started), nullTime(finished)
	return &d, nil
}
