package state

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"strings"
	"time"
)

// Policy is the gates a promotion to an environment must pass. The zero
// value has none. Gates are checked by k2 promote; the signature and
// approval gates also by k2 deploy and upgrade of the environment, and the
// signature gate by k2 rollback.
type Policy struct {
	// HealthyFor: the source environment must have been healthy (every
	// node Ready, every App Ready) for at least this long.
	HealthyFor Duration `json:"healthyFor,omitzero"`
	// SignedBy: the artifact must carry a valid signature by one of these
	// public keys.
	SignedBy []TrustedKey `json:"signedBy,omitempty"`
	// Approval: someone must have run 'k2 approve <env> <digest>' for the
	// digest first.
	Approval bool `json:"approval,omitempty"`
}

// IsZero reports whether p has no gate.
func (p Policy) IsZero() bool {
	return p.HealthyFor.Duration == 0 && len(p.SignedBy) == 0 && !p.Approval
}

// TrustedKey is a public key a signature gate accepts. The state store
// keeps the key itself, so the gate does not depend on a file staying put.
type TrustedKey struct {
	// ID identifies the key: sha256 of its PKIX (DER) encoding, "sha256:<hex>".
	ID string `json:"id"`
	// Source is the file the key was read from, for people.
	Source string `json:"source,omitempty"`
	// PEM is the public key, PEM-encoded ("PUBLIC KEY").
	PEM string `json:"pem"`
}

// Duration is a time.Duration that reads and writes as "10m0s" in JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string ("90s", "10m").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// IsZero lets omitzero drop an unset duration.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// registryRE: host[:port] then optional /path components, lowercase as OCI
// repository names are.
var registryRE = regexp.MustCompile(`^[a-zA-Z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

// ValidateRegistry reports whether r can be an environment's registry: a
// registry host with an optional port and repository prefix, no scheme, tag
// or digest. The empty string (no registry) is valid.
func ValidateRegistry(r string) error {
	if r == "" {
		return nil
	}
	host, _, _ := strings.Cut(r, "/")
	if !registryRE.MatchString(r) || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Errorf("registry %q: %w; write host[:port][/prefix], e.g. registry.example:5000/mirror", r, ErrInvalid)
	}
	return nil
}

// UpdateEnv changes environment name's registry, policy or provider
// config in one transaction: fn gets the stored environment and edits it
// in place. Values are changed with SetEnvValues.
func (s *Store) UpdateEnv(ctx context.Context, name string, fn func(*Environment) error) (*Environment, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		e, err := scanEnv(tx.QueryRowContext(ctx, `SELECT `+envCols+` FROM environments WHERE name = ?`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("environment %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
		if err := ValidateRegistry(e.Registry); err != nil {
			return fmt.Errorf("environment %q: %w", name, err)
		}
		if err := checkProviderConfig(e); err != nil {
			return err
		}
		pol, err := json.Marshal(e.Policy)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE environments SET registry = ?, policy = ?, provider_config = ?, provider_ref = ?, updated_at = ? WHERE name = ?`,
			e.Registry, string(pol), string(e.ProviderConfig), e.ProviderConfigRef, s.stamp(), name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("updating environment %q: %w", name, err)
	}
	return s.GetEnv(ctx, name)
}

// Approval records that Actor approved Digest for Env.
type Approval struct {
	Env        string    `json:"env"`
	Digest     string    `json:"digest"`
	Actor      string    `json:"actor"`
	Comment    string    `json:"comment,omitempty"`
	ApprovedAt time.Time `json:"approvedAt"`
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// ValidateDigest reports whether d is a full sha256 digest.
func ValidateDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("digest %q: %w; write sha256: and 64 hex digits (k2 history or k2 inspect show it)", d, ErrInvalid)
	}
	return nil
}

// Approve records a's approval (Actor defaults to Actor()); approving the
// same digest again replaces the comment and time.
func (s *Store) Approve(ctx context.Context, a Approval) (*Approval, error) {
	if err := ValidateDigest(a.Digest); err != nil {
		return nil, err
	}
	if a.Actor == "" {
		a.Actor = Actor()
	}
	a.ApprovedAt = s.now().UTC()
	_, err := s.db.ExecContext(ctx, `INSERT INTO approvals (env, digest, actor, comment, approved_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (env, digest, actor) DO UPDATE SET comment = excluded.comment, approved_at = excluded.approved_at`,
		a.Env, a.Digest, a.Actor, a.Comment, fmtTime(a.ApprovedAt))
	if err != nil {
		if isForeignKey(err) {
			return nil, fmt.Errorf("environment %q: %w", a.Env, ErrNotFound)
		}
		return nil, fmt.Errorf("recording approval of %s for %q: %w", a.Digest, a.Env, err)
	}
	return &a, nil
}

// Approvals returns env's approvals, newest first; digest "" means all.
func (s *Store) Approvals(ctx context.Context, env, digest string) ([]Approval, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT env, digest, actor, comment, approved_at FROM approvals
		WHERE env = ? AND (? = '' OR digest = ?) ORDER BY approved_at DESC, actor`, env, digest, digest)
	if err != nil {
		return nil, fmt.Errorf("reading approvals of %q: %w", env, err)
	}
	defer rows.Close()
	out := []Approval{}
	for rows.Next() {
		var a Approval
		var at string
		if err := rows.Scan(&a.Env, &a.Digest, &a.Actor, &a.Comment, &at); err != nil {
			return nil, err
		}
		a.ApprovedAt = parseTime(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// ActorEnv overrides who k2 records as having run a command (a CI job's
// name, say); by default it is the OS user at this host.
const ActorEnv = "K2_ACTOR"

// Actor returns who is running k2: $K2_ACTOR, else user@host.
func Actor() string {
	if a := os.Getenv(ActorEnv); a != "" {
		return a
	}
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if v := os.Getenv("USER"); v != "" {
		name = v
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return name + "@" + h
	}
	return name
}

// ValuesHash identifies a set of resolved ARG values: "sha256:<hex>" of
// their JSON with sorted keys. Equal values give equal hashes.
func ValuesHash(vals map[string]string) string {
	if vals == nil {
		vals = map[string]string{}
	}
	b, _ := json.Marshal(vals) // map keys are sorted
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
