// Package sign signs k2 artifacts and verifies their signatures, in
// cosign's format so that an existing verifier reads them: a Sigstore bundle
// (v0.3) holding a DSSE envelope of an in-toto statement whose subject is
// the artifact's manifest digest and whose predicate type is cosign's
// signature predicate, attached to the artifact as an OCI referrer
// (artifactType application/vnd.dev.sigstore.bundle.v0.3+json), exactly as
// `cosign sign --key` (v3, or v2 with --new-bundle-format) does it.
// sigstore-go builds and checks the bundles; nothing here hand-rolls an
// envelope. Keys are PEM files, ECDSA P-256 or ed25519; keyless signing
// (Fulcio, Rekor) is out of scope, so bundles carry no transparency log
// entry and are verified as cosign verifies with --key
// --insecure-ignore-tlog.
//
// The signature covers the manifest digest, and the manifest names the
// config and every layer by digest: changing any of them changes the
// digest the signature does not cover.
package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// Media types and annotations of a signature, as cosign writes them.
const (
	// BundleMediaType is the referrer manifest's artifactType and its one
	// layer's media type.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// PredicateType is cosign's predicate type for a plain signature.
	PredicateType = "https://sigstore.dev/cosign/sign/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// AnnotationContent says what the bundle holds ("dsse-envelope").
	AnnotationContent = "dev.sigstore.bundle.content"
	// AnnotationPredicateType repeats the statement's predicate type.
	AnnotationPredicateType = "dev.sigstore.bundle.predicateType"
)

// Signature is a signature attached to an artifact.
type Signature struct {
	// Digest is the referrer manifest's digest.
	Digest string `json:"digest"`
	// Subject is the signed artifact's manifest digest.
	Subject string `json:"subject"`
	// KeyID is the signing key's ID (sha256 of its PKIX encoding).
	KeyID     string    `json:"keyId,omitempty"`
	Algorithm string    `json:"algorithm,omitempty"`
	Created   time.Time `json:"created,omitzero"`
}

// Options tune Sign. The zero value stamps the signature with the current time.
type Options struct {
	// Now is the creation time recorded in the referrer's annotations.
	Now time.Time
}

// Sign signs the manifest subject with key and attaches the signature to it
// in target as an OCI referrer. target must hold subject (a registry
// repository or an OCI layout); registries without the referrers API get
// the referrers tag schema, as oras-go does.
func Sign(ctx context.Context, target oras.Target, subject ocispec.Descriptor, key *PrivateKey, o Options) (*Signature, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	stmt, err := statement(subject)
	if err != nil {
		return nil, err
	}
	b, err := sgsign.Bundle(&sgsign.DSSEData{Data: stmt, PayloadType: PayloadType}, key, sgsign.BundleOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", subject.Digest, err)
	}
	raw, err := protojson.Marshal(b)
	if err != nil {
		return nil, err
	}
	layer := content.NewDescriptorFromBytes(BundleMediaType, raw)
	if err := target.Push(ctx, layer, bytes.NewReader(raw)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return nil, fmt.Errorf("pushing the signature bundle: %w", err)
	}
	layer.Annotations = map[string]string{
		ocispec.AnnotationTitle: layer.Digest.Algorithm().String() + "-" + layer.Digest.Encoded() + ".sigstore.json",
	}
	sub := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	created := o.Now.UTC().Format(time.RFC3339)
	d, err := oras.PackManifest(ctx, target, oras.PackManifestVersion1_1, BundleMediaType, oras.PackManifestOptions{
		Subject: &sub,
		Layers:  []ocispec.Descriptor{layer},
		ManifestAnnotations: map[string]string{
			ocispec.AnnotationCreated: created,
			AnnotationContent:         "dsse-envelope",
			AnnotationPredicateType:   PredicateType,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("attaching the signature to %s: %w", subject.Digest, err)
	}
	t, _ := time.Parse(time.RFC3339, created)
	return &Signature{Digest: d.Digest.String(), Subject: subject.Digest.String(), KeyID: key.pub.ID,
		Algorithm: key.pub.Algorithm, Created: t}, nil
}

// statement is the in-toto statement cosign signs for an image: the
// manifest digest as the only subject, cosign's signature predicate type
// and an empty predicate.
func statement(subject ocispec.Descriptor) ([]byte, error) {
	if err := subject.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("subject digest: %w", err)
	}
	st := &intoto.Statement{
		Type: intoto.StatementTypeUri,
		Subject: []*intoto.ResourceDescriptor{{
			Digest: map[string]string{subject.Digest.Algorithm().String(): subject.Digest.Encoded()},
		}},
		PredicateType: PredicateType,
		Predicate:     &structpb.Struct{},
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return protojson.Marshal(st)
}
