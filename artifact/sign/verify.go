package sign

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"

	"k2.dev/k2/artifact"
)

// Sentinels of Verify, for errors.Is.
var (
	// ErrUnsigned: the artifact has no signature at all.
	ErrUnsigned = errors.New("no signature")
	// ErrBadSignature: it has signatures, but none is valid for the
	// artifact with any of the keys.
	ErrBadSignature = errors.New("no valid signature")
	// ErrTampered: the artifact's content does not match its manifest.
	ErrTampered = errors.New("content does not match its digest")
)

// VerifyOptions tune Verify. The zero value checks signatures only.
type VerifyOptions struct {
	// Content also reads the manifest, config and every layer and checks
	// each against the digest that names it, so a blob altered in the
	// store or registry is found (a pull checks the same as it goes).
	Content bool
}

// Result is what Verify found.
type Result struct {
	// Subject is the artifact's manifest digest.
	Subject string `json:"subject"`
	// Verified: a signature is valid for Subject with one of the keys.
	Verified bool `json:"verified"`
	// Key is the key that verified it.
	Key *KeyRef `json:"key,omitempty"`
	// Signatures is every signature attached, with why it was rejected.
	Signatures []Found `json:"signatures"`
	// ContentChecked: the content was read and matched its digests.
	ContentChecked bool `json:"contentChecked,omitempty"`
}

// KeyRef names a key in results.
type KeyRef struct {
	ID     string `json:"id"`
	Source string `json:"source,omitempty"`
}

// Found is one signature referrer of the artifact.
type Found struct {
	// Digest is the referrer manifest's digest.
	Digest  string    `json:"digest"`
	Created time.Time `json:"created,omitzero"`
	// KeyID is the key that verified it, if one did.
	KeyID string `json:"keyId,omitempty"`
	// Error says why no key verified it.
	Error string `json:"error,omitempty"`
}

// Verify checks that the manifest subject in target carries a valid
// signature by one of keys: it lists subject's Sigstore bundle referrers
// and has sigstore-go verify each as cosign verifies with --key and
// --insecure-ignore-tlog (the key, no transparency log, the statement's
// subject digest equal to subject's), and requires cosign's signature
// predicate type. The error wraps ErrUnsigned, ErrBadSignature (with each
// signature's reason) or ErrTampered; the Result is filled either way.
func Verify(ctx context.Context, target content.ReadOnlyGraphStorage, subject ocispec.Descriptor, keys []*PublicKey, o VerifyOptions) (*Result, error) {
	res := &Result{Subject: subject.Digest.String(), Signatures: []Found{}}
	if o.Content {
		if err := checkContent(ctx, target, subject); err != nil {
			return res, err
		}
		res.ContentChecked = true
	}
	refs, err := signatures(ctx, target, subject)
	if err != nil {
		return res, err
	}
	if len(refs) == 0 {
		return res, fmt.Errorf("%s: %w", subject.Digest, ErrUnsigned)
	}
	var reasons []string
	for _, r := range refs {
		f := Found{Digest: r.desc.Digest.String()}
		if t, err := time.Parse(time.RFC3339, r.manifest.Annotations[ocispec.AnnotationCreated]); err == nil {
			f.Created = t
		}
		raw, err := bundleBlob(ctx, target, r.manifest)
		if err == nil {
			var k *PublicKey
			k, err = verifyBundle(raw, subject, keys)
			if err == nil {
				f.KeyID = k.ID
				if !res.Verified {
					res.Verified, res.Key = true, &KeyRef{ID: k.ID, Source: k.Source}
				}
			}
		}
		if err != nil {
			f.Error = err.Error()
			reasons = append(reasons, fmt.Sprintf("signature %s: %s", shortDigest(f.Digest), f.Error))
		}
		res.Signatures = append(res.Signatures, f)
	}
	if !res.Verified {
		return res, fmt.Errorf("%s: %w by %s (%s)", subject.Digest, ErrBadSignature, keyList(keys), strings.Join(reasons, "; "))
	}
	return res, nil
}

// referrer is a signature referrer of an artifact.
type referrer struct {
	desc     ocispec.Descriptor
	manifest *ocispec.Manifest
}

// signatures returns subject's referrers that hold a Sigstore bundle. It
// reads every referrer's manifest rather than trusting the artifactType of
// the referrers index (some registries report the config's media type
// there), as cosign does.
func signatures(ctx context.Context, target content.ReadOnlyGraphStorage, subject ocispec.Descriptor) ([]referrer, error) {
	refs, err := registry.Referrers(ctx, target, subject, "")
	if err != nil {
		return nil, fmt.Errorf("listing the signatures of %s: %w", subject.Digest, err)
	}
	var out []referrer
	for _, r := range refs {
		if r.MediaType != ocispec.MediaTypeImageManifest {
			continue
		}
		b, err := content.FetchAll(ctx, target, r)
		if err != nil {
			return nil, fmt.Errorf("reading referrer %s of %s: %w", r.Digest, subject.Digest, err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		if m.ArtifactType == BundleMediaType || len(m.Layers) > 0 && m.Layers[0].MediaType == BundleMediaType {
			out = append(out, referrer{desc: r, manifest: &m})
		}
	}
	return out, nil
}

// bundleBlob reads the one bundle layer of a signature referrer.
func bundleBlob(ctx context.Context, f content.Fetcher, m *ocispec.Manifest) ([]byte, error) {
	for _, l := range m.Layers {
		if l.MediaType == BundleMediaType {
			if l.Size > 1<<20 {
				return nil, fmt.Errorf("bundle of %d bytes is too large", l.Size)
			}
			return content.FetchAll(ctx, f, l)
		}
	}
	return nil, errors.New("the referrer holds no Sigstore bundle")
}

// verifyBundle verifies a bundle for subject with each key in turn and
// returns the key that verified it.
func verifyBundle(raw []byte, subject ocispec.Descriptor, keys []*PublicKey) (*PublicKey, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("reading the bundle: %w", err)
	}
	dig, err := hex.DecodeString(subject.Digest.Encoded())
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no key to verify it with")
	}
	var errs []string
	for _, k := range keys {
		err := verifyWith(&b, subject.Digest.Algorithm().String(), dig, k)
		if err == nil {
			return k, nil
		}
		errs = append(errs, k.String()+": "+err.Error())
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

// verifyWith is cosign's key-based verification of a bundle with
// sigstore-go: trusted material of just the key, no observer timestamps
// (no transparency log), the artifact digest policy and WithKey.
func verifyWith(b *bundle.Bundle, alg string, digest []byte, k *PublicKey) error {
	key := root.NewExpiringKey(k.verifier, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return err
	}
	res, err := v.Verify(b, verify.NewPolicy(verify.WithArtifactDigest(alg, digest), verify.WithKey()))
	if err != nil {
		if strings.Contains(err.Error(), "could not verify envelope") {
			return errors.New("the signature does not verify with this key (made with another key, or the envelope was altered)")
		}
		return err
	}
	if res.Statement == nil || res.Statement.GetPredicateType() != PredicateType {
		got := ""
		if res.Statement != nil {
			got = res.Statement.GetPredicateType()
		}
		return fmt.Errorf("predicate type %q is not a signature (%s)", got, PredicateType)
	}
	return nil
}

// checkContent reads the manifest, its config and its layers, each checked
// against its descriptor's digest and size.
func checkContent(ctx context.Context, f content.Fetcher, subject ocispec.Descriptor) error {
	b, err := content.FetchAll(ctx, f, subject)
	if err != nil {
		return fmt.Errorf("manifest %s: %w: %w", subject.Digest, ErrTampered, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", subject.Digest, err)
	}
	blobs := append([]ocispec.Descriptor{m.Config}, m.Layers...)
	for i, d := range blobs {
		name := "config"
		if i > 0 {
			name = "layer " + d.Annotations[ocispec.AnnotationTitle]
		}
		if err := artifact.VerifyBlob(ctx, f, d); err != nil {
			return fmt.Errorf("%s (%s): %w: %w", name, d.Digest, ErrTampered, err)
		}
	}
	return nil
}

func keyList(keys []*PublicKey) string {
	if len(keys) == 0 {
		return "any key (none given)"
	}
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
