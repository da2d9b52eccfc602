package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/pki"
)

// TokensFile holds the join tokens of a data directory: ids and hashes of
// their secrets, never the secrets themselves.
const TokensFile = "tokens.json"

// TokenRecord is one stored join token.
type TokenRecord struct {
	ID          string    `json:"id"`
	SecretHash  string    `json:"secretHash"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
}

// TokenStore keeps join tokens in <data-dir>/tokens.json. It is read on
// every verification, so tokens created by 'k2 token create' while the
// server runs are accepted at once.
type TokenStore struct {
	path string
	mu   sync.Mutex
}

var _ join.TokenVerifier = (*TokenStore)(nil)

// NewTokenStore returns the token store of a data directory.
func NewTokenStore(dataDir string) *TokenStore {
	return &TokenStore{path: filepath.Join(dataDir, TokensFile)}
}

// CreateToken makes a new join token for the cluster whose PKI is in dataDir;
// ttl 0 means it never expires. The token string is shown once: only its
// hash is stored.
func CreateToken(dataDir string, ttl time.Duration, description string) (join.Token, TokenRecord, error) {
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "pki", pki.CACert))
	if errors.Is(err, os.ErrNotExist) {
		return join.Token{}, TokenRecord{}, fmt.Errorf("no cluster CA in %s: start 'k2 server --data-dir %s' once first", dataDir, dataDir)
	}
	if err != nil {
		return join.Token{}, TokenRecord{}, err
	}
	tok, err := join.NewToken(caPEM)
	if err != nil {
		return join.Token{}, TokenRecord{}, err
	}
	rec := TokenRecord{ID: tok.ID, SecretHash: join.HashSecret(tok.Secret), Description: description, Created: time.Now().UTC().Truncate(time.Second)}
	if ttl > 0 {
		rec.Expires = rec.Created.Add(ttl)
	}
	s := NewTokenStore(dataDir)
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.load()
	if err != nil {
		return join.Token{}, TokenRecord{}, err
	}
	recs = append(recs, rec)
	if err := s.save(recs); err != nil {
		return join.Token{}, TokenRecord{}, err
	}
	return tok, rec, nil
}

// List returns the stored tokens (without secrets).
func (s *TokenStore) List() ([]TokenRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// Verify reports whether id/secret is a stored, unexpired token.
func (s *TokenStore) Verify(_ context.Context, id, secret string) (bool, error) {
	recs, err := s.List()
	if err != nil {
		return false, err
	}
	now := time.Now()
	for _, r := range recs {
		if r.ID == id && join.VerifySecret(r.SecretHash, secret) {
			return r.Expires.IsZero() || now.Before(r.Expires), nil
		}
	}
	return false, nil
}

func (s *TokenStore) load() ([]TokenRecord, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []TokenRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.path, err)
	}
	return recs, nil
}

func (s *TokenStore) save(recs []TokenRecord) error {
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, b, 0o600)
}
