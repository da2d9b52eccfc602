package sign

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
)

// SignRef signs the artifact ref names where it lives — its registry, or
// the local store for a reference without a registry host — and returns
// the signature and the digest-pinned reference it covers.
func SignRef(ctx context.Context, s *artifact.Store, ref string, key *PrivateKey, remote artifact.RemoteOptions, o Options) (*Signature, string, error) {
	t, subject, err := locate(ctx, s, ref, remote)
	if err != nil {
		return nil, "", err
	}
	var sig *Signature
	err = t.Write(ctx, func() error {
		var err error
		sig, err = Sign(ctx, t, subject, key, o)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return sig, artifact.PinnedRef(t.Ref, subject.Digest.String()), nil
}

// RefResult is VerifyRef's result: Verify's and the reference checked.
type RefResult struct {
	// Ref is the digest-pinned reference that was checked.
	Ref string `json:"ref"`
	*Result
}

// VerifyRef verifies the artifact ref names where it lives (see SignRef)
// with Verify. Failures are user errors (exit code 1, registry problems 5)
// whose message names the reason.
func VerifyRef(ctx context.Context, s *artifact.Store, ref string, keys []*PublicKey, remote artifact.RemoteOptions, o VerifyOptions) (*RefResult, error) {
	t, subject, err := locate(ctx, s, ref, remote)
	if err != nil {
		return nil, err
	}
	res, err := Verify(ctx, t, subject, keys, o)
	out := &RefResult{Ref: artifact.PinnedRef(t.Ref, subject.Digest.String()), Result: res}
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, ErrUnsigned):
		return out, usererr.Wrap(usererr.KindFailure, fmt.Errorf("%s: %w", out.Ref, ErrUnsigned),
			"sign it with 'k2 sign "+out.Ref+" --key <private key>'; a promotion copies signatures along")
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrTampered):
		if !strings.Contains(t.Ref, "@") { // the error names the digest already
			err = fmt.Errorf("%s: %w", t.Ref, err)
		}
		return out, usererr.Wrap(usererr.KindFailure, err,
			"check that the key is the one it was signed with, and that nobody changed the artifact since")
	}
	return out, artifact.RegistryError("verifying", t.Ref, err)
}

func locate(ctx context.Context, s *artifact.Store, ref string, remote artifact.RemoteOptions) (*artifact.Target, ocispec.Descriptor, error) {
	t, err := artifact.Locate(s, ref, remote)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	d, err := t.ResolveRef(ctx)
	if err != nil {
		if errors.Is(err, artifact.ErrNotFound) {
			return nil, d, usererr.Wrap(usererr.KindFailure, err, "build or pull it first, or name its registry")
		}
		return nil, d, err
	}
	return t, d, nil
}

// State is an artifact's signature state in one word, for display.
type State string

// States of Summary.
const (
	// StateVerified: signed by one of the keys.
	StateVerified State = "verified"
	// StateSigned: carries signatures, but no keys were given to check them.
	StateSigned State = "signed"
	// StateUnsigned: no signature at all.
	StateUnsigned State = "unsigned"
	// StateInvalid: signatures, none valid with the keys given.
	StateInvalid State = "invalid"
	// StateUnknown: the signatures could not be read (registry down…).
	StateUnknown State = "unknown"
)

// Summary is what a display (the TUI, status lines) shows about an
// artifact's signatures.
type Summary struct {
	State State `json:"state"`
	// Signatures is how many signatures the artifact carries.
	Signatures int `json:"signatures"`
	// Key names the key that verified it (StateVerified).
	Key string `json:"key,omitempty"`
	// Detail says why it is not verified, in one line.
	Detail string `json:"detail,omitempty"`
}

// Status summarises the signatures of the artifact ref names (where it
// lives, see SignRef), checked with keys; with no keys it only counts them.
// It never fails: problems become StateUnknown with a Detail. It reads no
// layer content.
func Status(ctx context.Context, s *artifact.Store, ref string, keys []*PublicKey, remote artifact.RemoteOptions) Summary {
	t, subject, err := locate(ctx, s, ref, remote)
	if err != nil {
		return Summary{State: StateUnknown, Detail: err.Error()}
	}
	if len(keys) == 0 {
		refs, err := signatures(ctx, t, subject)
		switch {
		case err != nil:
			return Summary{State: StateUnknown, Detail: err.Error()}
		case len(refs) == 0:
			return Summary{State: StateUnsigned}
		}
		return Summary{State: StateSigned, Signatures: len(refs), Detail: "no key given to verify with"}
	}
	res, err := Verify(ctx, t, subject, keys, VerifyOptions{})
	sum := Summary{Signatures: len(res.Signatures)}
	switch {
	case err == nil:
		sum.State = StateVerified
		sum.Key = (&PublicKey{ID: res.Key.ID, Source: res.Key.Source}).String()
	case errors.Is(err, ErrUnsigned):
		sum.State = StateUnsigned
	case errors.Is(err, ErrBadSignature):
		sum.State, sum.Detail = StateInvalid, err.Error()
	default:
		sum.State, sum.Detail = StateUnknown, err.Error()
	}
	return sum
}
