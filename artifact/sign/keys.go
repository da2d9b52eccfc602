package sign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"k2.dev/k2/internal/usererr"
)

// keyHint explains which keys k2 reads.
const keyHint = "use an unencrypted PEM key, ECDSA P-256 or ed25519: openssl genpkey -algorithm ed25519 -out k2.key && openssl pkey -in k2.key -pubout -out k2.pub"

// PublicKey is a key signatures are verified with.
type PublicKey struct {
	Key crypto.PublicKey
	// ID is "sha256:<hex>" of the key's PKIX (DER) encoding.
	ID string
	// Algorithm is "ecdsa-p256" or "ed25519".
	Algorithm string
	// Source is where the key was read from (a file), for messages.
	Source   string
	verifier signature.Verifier
}

// PEM returns the key PEM-encoded ("PUBLIC KEY").
func (k *PublicKey) PEM() string {
	b, _ := cryptoutils.MarshalPublicKeyToPEM(k.Key)
	return string(b)
}

// String names the key for people: its source and short ID.
func (k *PublicKey) String() string {
	id := k.ID
	if len(id) > 19 {
		id = id[:19]
	}
	if k.Source == "" {
		return id
	}
	return k.Source + " (" + id + ")"
}

// PrivateKey is a key k2 signs with. It implements sigstore-go's
// sign.Keypair, so sigstore-go builds the bundle.
type PrivateKey struct {
	signer crypto.Signer
	alg    signature.AlgorithmDetails
	pub    *PublicKey
}

var _ sgsign.Keypair = (*PrivateKey)(nil)

// Public returns the key's public half.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// LoadPrivateKey reads an unencrypted PEM private key file (PKCS#8
// "PRIVATE KEY", or SEC 1 "EC PRIVATE KEY"): ECDSA P-256 or ed25519.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading signing key: %w", err), "")
	}
	return ParsePrivateKey(b, path)
}

// ParsePrivateKey parses a PEM private key; source names it in errors.
func ParsePrivateKey(b []byte, source string) (*PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: not a PEM file", source), keyHint)
	}
	if blk.Type == "PUBLIC KEY" {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s is a public key; signing needs the private key", source), keyHint)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(b, cryptoutils.SkipPassword)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: reading private key (%s): %w", source, blk.Type, err), keyHint)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %T cannot sign", source, priv), keyHint)
	}
	pub, err := newPublicKey(signer.Public(), source)
	if err != nil {
		return nil, err
	}
	alg, err := algorithmOf(pub.Key)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{signer: signer, alg: alg, pub: pub}, nil
}

// LoadPublicKey reads a PEM public key file ("PUBLIC KEY"); a private key
// file is accepted too, and its public half used.
func LoadPublicKey(path string) (*PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading public key: %w", err), "")
	}
	return ParsePublicKey(b, path)
}

// ParsePublicKey parses a PEM public (or private) key; source names it.
func ParsePublicKey(b []byte, source string) (*PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: not a PEM file", source), keyHint)
	}
	if blk.Type != "PUBLIC KEY" {
		k, err := ParsePrivateKey(b, source)
		if err != nil {
			return nil, err
		}
		return k.pub, nil
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: reading public key: %w", source, err), keyHint)
	}
	return newPublicKey(pub, source)
}

func newPublicKey(pub crypto.PublicKey, source string) (*PublicKey, error) {
	alg, err := algorithmOf(pub)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", source, err), keyHint)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	// The same verifier cosign loads for --key.
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	name := "ecdsa-p256"
	if alg.GetKeyType() == signature.ED25519 {
		name = "ed25519"
	}
	return &PublicKey{Key: pub, ID: "sha256:" + hex.EncodeToString(sum[:]), Algorithm: name, Source: source, verifier: v}, nil
}

// errKeyType: a key of a type k2 does not sign or verify with.
var errKeyType = errors.New("unsupported key type")

func algorithmOf(pub crypto.PublicKey) (signature.AlgorithmDetails, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return signature.AlgorithmDetails{}, fmt.Errorf("%w: ECDSA on %s; use P-256", errKeyType, k.Curve.Params().Name)
		}
		return signature.GetAlgorithmDetails(protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256)
	case ed25519.PublicKey:
		return signature.GetAlgorithmDetails(protocommon.PublicKeyDetails_PKIX_ED25519)
	}
	return signature.AlgorithmDetails{}, fmt.Errorf("%w %T; use ECDSA P-256 or ed25519", errKeyType, pub)
}

// GetHashAlgorithm implements sign.Keypair.
func (k *PrivateKey) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }

// GetSigningAlgorithm implements sign.Keypair.
func (k *PrivateKey) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}

// GetHint implements sign.Keypair: the base64 SHA-256 of the PKIX key, as
// sigstore-go's own keypairs hint.
func (k *PrivateKey) GetHint() []byte {
	der, _ := x509.MarshalPKIXPublicKey(k.pub.Key)
	sum := sha256.Sum256(der)
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

// GetKeyAlgorithm implements sign.Keypair.
func (k *PrivateKey) GetKeyAlgorithm() string {
	if k.alg.GetKeyType() == signature.ED25519 {
		return "ED25519"
	}
	return "ECDSA"
}

// GetPublicKey implements sign.Keypair.
func (k *PrivateKey) GetPublicKey() crypto.PublicKey { return k.pub.Key }

// GetPublicKeyPem implements sign.Keypair.
func (k *PrivateKey) GetPublicKeyPem() (string, error) { return k.pub.PEM(), nil }

// SignData implements sign.Keypair: ECDSA signs the SHA-256 digest of data,
// ed25519 signs data itself (pure Ed25519). It returns the signature and
// what was signed.
func (k *PrivateKey) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	h := k.alg.GetHashType()
	msg := data
	if h != crypto.Hash(0) {
		hh := h.New()
		hh.Write(data)
		msg = hh.Sum(nil)
	}
	sig, err := k.signer.Sign(rand.Reader, msg, h)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w", err)
	}
	return sig, msg, nil
}

// GenerateKey makes a new key of algorithm "ed25519" or "ecdsa-p256" and
// returns it PEM-encoded (PKCS#8 private, PKIX public), for tests and
// first-time users.
func GenerateKey(algorithm string) (privPEM, pubPEM []byte, err error) {
	var priv crypto.Signer
	switch algorithm {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa-p256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, nil, fmt.Errorf("%w %q; use ed25519 or ecdsa-p256", errKeyType, algorithm)
	}
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	privPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	pubPEM, err = cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	return privPEM, pubPEM, err
}
