// Package join is how a machine joins a k2 cluster: a bootstrap token
// carries the hash of the cluster CA, so the agent can fetch the CA over
// unverified TLS, pin it, and then present the token's secret over verified
// TLS to get a node client certificate signed by the cluster CA.
//
// Token format (like kubeadm's discovery-token-ca-cert-hash, in one string):
//
//	K2<sha256 hex of the CA certificate PEM>::<id>.<secret>
//
// with id 6 and secret 16 characters of [a-z0-9]. The server keeps only
// HashSecret(secret) for each id.
package join

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// DefaultPort is the port of the join endpoint on the control plane.
const DefaultPort = 6444

const (
	tokenPrefix = "K2"
	idLen       = 6
	secretLen   = 16
	alphabet    = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// ErrBadToken is returned for a token that does not parse.
var ErrBadToken = errors.New("malformed join token")

// Token is a parsed join token.
type Token struct {
	CAHash string // sha256 hex of the CA certificate PEM
	ID     string
	Secret string
}

// String formats the token as users paste it.
func (t Token) String() string {
	return tokenPrefix + t.CAHash + "::" + t.ID + "." + t.Secret
}

// Credential is the "<id>.<secret>" part sent as the bearer credential.
func (t Token) Credential() string { return t.ID + "." + t.Secret }

// CAHash returns the hash a token carries for a CA certificate PEM.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// NewToken makes a token with a random id and secret for caPEM.
func NewToken(caPEM []byte) (Token, error) {
	id, err := randomString(idLen)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomString(secretLen)
	if err != nil {
		return Token{}, err
	}
	return Token{CAHash: CAHash(caPEM), ID: id, Secret: secret}, nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 256 % 36 bias is negligible here
	}
	return string(b), nil
}

// Parse parses a token string; errors wrap ErrBadToken and never echo the
// secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, fmt.Errorf("%w: it must start with %q", ErrBadToken, tokenPrefix)
	}
	hash, cred, ok := strings.Cut(rest, "::")
	if !ok {
		return Token{}, fmt.Errorf("%w: want K2<ca-hash>::<id>.<secret>", ErrBadToken)
	}
	if len(hash) != 64 || !isHex(hash) {
		return Token{}, fmt.Errorf("%w: the CA hash must be 64 hex characters", ErrBadToken)
	}
	id, secret, err := ParseCredential(cred)
	if err != nil {
		return Token{}, err
	}
	return Token{CAHash: strings.ToLower(hash), ID: id, Secret: secret}, nil
}

// ParseCredential splits "<id>.<secret>" and checks both parts.
func ParseCredential(cred string) (id, secret string, err error) {
	id, secret, ok := strings.Cut(cred, ".")
	if !ok || len(id) != idLen || len(secret) != secretLen || !inAlphabet(id) || !inAlphabet(secret) {
		return "", "", fmt.Errorf("%w: want <id>.<secret> with %d and %d characters of [a-z0-9]", ErrBadToken, idLen, secretLen)
	}
	return id, secret, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func inAlphabet(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune(alphabet, r) {
			return false
		}
	}
	return true
}

// HashSecret is what the server stores for a token's secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte("k2-join-token:" + secret))
	return hex.EncodeToString(sum[:])
}

// VerifySecret compares a presented secret with a stored hash in constant
// time.
func VerifySecret(storedHash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(storedHash), []byte(HashSecret(secret))) == 1
}
