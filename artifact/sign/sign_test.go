package sign_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"

	"k2.dev/k2/artifact/sign"
)

// keys writes a fresh key pair of alg into dir and loads both halves.
func keys(t *testing.T, alg string) (*sign.PrivateKey, *sign.PublicKey, []byte) {
	t.Helper()
	privPEM, pubPEM, err := sign.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kf, pf := filepath.Join(dir, "k2.key"), filepath.Join(dir, "k2.pub")
	os.WriteFile(kf, privPEM, 0o600)
	os.WriteFile(pf, pubPEM, 0o644)
	priv, err := sign.LoadPrivateKey(kf)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.LoadPublicKey(pf)
	if err != nil {
		t.Fatal(err)
	}
	if pub.ID != priv.Public().ID {
		t.Fatalf("public key id %s != private key's %s", pub.ID, priv.Public().ID)
	}
	return priv, pub, pubPEM
}

// pushArtifact packs a small k2-like artifact (a config and one layer)
// into target and returns its manifest descriptor.
func pushArtifact(t *testing.T, target oras.Target, layerData string, annotations map[string]string) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	cfg := []byte(`{"version":"k2.dev/cluster/v1","kubernetes":"v1.37.2"}`)
	cd := content.NewDescriptorFromBytes("application/vnd.k2.cluster.config.v1+json", cfg)
	ld := content.NewDescriptorFromBytes("application/vnd.k2.layer.app.v1+yaml", []byte(layerData))
	for _, b := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{cd, cfg}, {ld, []byte(layerData)}} {
		if err := target.Push(ctx, b.d, bytes.NewReader(b.b)); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
	}
	ld.Annotations = map[string]string{ocispec.AnnotationTitle: "web", "dev.k2.layer.kind": "app"}
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[ocispec.AnnotationCreated] = "1970-01-01T00:00:00Z"
	d, err := oras.PackManifest(ctx, target, oras.PackManifestVersion1_1, "application/vnd.k2.cluster.v1",
		oras.PackManifestOptions{ConfigDescriptor: &cd, Layers: []ocispec.Descriptor{ld}, ManifestAnnotations: annotations})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newRegistry serves go-containerregistry's registry, with or without the
// OCI referrers API, and returns its host and an oras repository in it.
func newRegistry(t *testing.T, referrers bool) (string, *remote.Repository) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	repo, err := remote.NewRepository(host + "/k2/hello")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return host, repo
}

// TestSignedArtifactVerifiesWithSigstore signs with k2 and then verifies
// with no k2 code at all: go-containerregistry lists the referrers, and
// sigstore-go (the library cosign verifies bundles with) checks the bundle
// exactly as `cosign verify --key k2.pub --insecure-ignore-tlog` sets it up,
// with cosign's own key loader. It also checks the referrer's layout
// against cosign's bundle spec.
func TestSignedArtifactVerifiesWithSigstore(t *testing.T) {
	for _, alg := range []string{"ed25519", "ecdsa-p256"} {
		for _, referrers := range []bool{true, false} {
			name := alg + "/referrers-api"
			if !referrers {
				name = alg + "/referrers-tag-schema"
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				host, repo := newRegistry(t, referrers)
				subject := pushArtifact(t, repo, "kind: App\n", nil)
				priv, _, pubPEM := keys(t, alg)
				sig, err := sign.Sign(ctx, repo, subject, priv, sign.Options{Now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)})
				if err != nil {
					t.Fatal(err)
				}

				// The referrers of the subject, read over plain HTTP as the
				// distribution spec says (the API, or the tag schema).
				im := referrersOf(t, host, subject.Digest.String(), referrers)
				// (go-containerregistry's registry reports the config's media
				// type as the artifactType in its referrers API, so that is
				// checked on the manifest below.)
				if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != sig.Digest {
					t.Fatalf("referrers of %s = %+v, want the one signature %s", subject.Digest, im.Manifests, sig.Digest)
				}
				raw := httpGet(t, "http://"+host+"/v2/k2/hello/manifests/"+sig.Digest, "application/vnd.oci.image.manifest.v1+json")
				var m struct {
					ArtifactType string `json:"artifactType"`
					Config       struct {
						MediaType string `json:"mediaType"`
					} `json:"config"`
					Layers []struct {
						MediaType   string            `json:"mediaType"`
						Digest      string            `json:"digest"`
						Annotations map[string]string `json:"annotations"`
					} `json:"layers"`
					Subject     struct{ Digest string } `json:"subject"`
					Annotations map[string]string       `json:"annotations"`
				}
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				if m.ArtifactType != sign.BundleMediaType || m.Config.MediaType != "application/vnd.oci.empty.v1+json" ||
					len(m.Layers) != 1 || m.Layers[0].MediaType != sign.BundleMediaType ||
					m.Layers[0].Annotations["org.opencontainers.image.title"] != strings.Replace(m.Layers[0].Digest, ":", "-", 1)+".sigstore.json" ||
					m.Subject.Digest != subject.Digest.String() ||
					m.Annotations["dev.sigstore.bundle.content"] != "dsse-envelope" ||
					m.Annotations["dev.sigstore.bundle.predicateType"] != "https://sigstore.dev/cosign/sign/v1" ||
					m.Annotations["org.opencontainers.image.created"] != "2026-12-01T10:00:00Z" {
					t.Fatalf("referrer manifest does not follow cosign's bundle spec:\n%s", raw)
				}
				buf := bytes.NewBuffer(httpGet(t, "http://"+host+"/v2/k2/hello/blobs/"+m.Layers[0].Digest, ""))

				// sigstore-go, set up as cosign's CheckOpts.verificationOptions
				// does for SigVerifier != nil and IgnoreTlog.
				cosignVerify := func(bundleJSON []byte, digest string, pubPEM []byte) error {
					var b bundle.Bundle
					if err := b.UnmarshalJSON(bundleJSON); err != nil {
						return err
					}
					pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
					if err != nil {
						return err
					}
					sv, err := signature.LoadVerifier(pub, crypto.SHA256)
					if err != nil {
						return err
					}
					key := root.NewExpiringKey(sv, time.Time{}, time.Time{})
					tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
					v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
					if err != nil {
						return err
					}
					raw, _ := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
					res, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", raw), verify.WithKey()))
					if err != nil {
						return err
					}
					if res.Statement.GetPredicateType() != "https://sigstore.dev/cosign/sign/v1" {
						return errors.New("predicate type " + res.Statement.GetPredicateType())
					}
					return nil
				}
				if err := cosignVerify(buf.Bytes(), subject.Digest.String(), pubPEM); err != nil {
					t.Fatalf("sigstore-go rejects k2's signature: %v\n%s", err, buf.Bytes())
				}
				other := pushArtifact(t, repo, "kind: App\nspec: {}\n", nil)
				if err := cosignVerify(buf.Bytes(), other.Digest.String(), pubPEM); err == nil {
					t.Error("sigstore-go accepts the signature for another digest")
				}
				_, _, otherPub := keys(t, alg)
				if err := cosignVerify(buf.Bytes(), subject.Digest.String(), otherPub); err == nil {
					t.Error("sigstore-go accepts the signature with another key")
				}
				var env struct {
					DSSEEnvelope struct {
						Payload     []byte `json:"payload"`
						PayloadType string `json:"payloadType"`
					} `json:"dsseEnvelope"`
				}
				json.Unmarshal(buf.Bytes(), &env)
				var st struct {
					Type    string `json:"_type"`
					Subject []struct {
						Digest map[string]string `json:"digest"`
					} `json:"subject"`
				}
				json.Unmarshal(env.DSSEEnvelope.Payload, &st)
				if env.DSSEEnvelope.PayloadType != "application/vnd.in-toto+json" || st.Type != "https://in-toto.io/Statement/v1" ||
					len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != subject.Digest.String() {
					t.Errorf("statement = %s (%s)", env.DSSEEnvelope.Payload, env.DSSEEnvelope.PayloadType)
				}
			})
		}
	}
}

// TestVerifyRefuses covers what a signature must not survive: a tampered
// manifest, a tampered layer, the wrong key, no signature, a signature
// moved onto another artifact and an edited envelope.
func TestVerifyRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, _ := keys(t, "ed25519")
	ecPriv, ecPub, _ := keys(t, "ecdsa-p256")
	_, wrong, _ := keys(t, "ed25519")
	subject := pushArtifact(t, store, "kind: App\nmetadata: {name: web}\n", nil)
	sig, err := sign.Sign(ctx, store, subject, priv, sign.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Sign(ctx, store, subject, ecPriv, sign.Options{}); err != nil {
		t.Fatal(err)
	}

	res, err := sign.Verify(ctx, store, subject, []*sign.PublicKey{wrong, pub}, sign.VerifyOptions{Content: true})
	if err != nil {
		t.Fatalf("Verify of a good signature: %v", err)
	}
	if !res.Verified || res.Key.ID != pub.ID || len(res.Signatures) != 2 || !res.ContentChecked {
		t.Errorf("result = %+v", res)
	}
	if res, err := sign.Verify(ctx, store, subject, []*sign.PublicKey{ecPub}, sign.VerifyOptions{}); err != nil || res.Key.ID != ecPub.ID {
		t.Errorf("ECDSA signature: %+v, %v", res, err)
	}

	// A manifest changed after signing has another digest and no signature.
	tampered := pushArtifact(t, store, "kind: App\nmetadata: {name: web}\n", map[string]string{"extra": "x"})
	// A layer changed after signing: the manifest names another blob.
	otherLayer := pushArtifact(t, store, "kind: App\nmetadata: {name: evil}\n", nil)
	// The signature's referrer copied onto the tampered manifest.
	moved := pushArtifact(t, store, "kind: App\nmetadata: {name: moved}\n", nil)
	copyReferrer(t, store, sig.Digest, moved)
	// An envelope whose payload was edited to name the other artifact.
	edited := pushArtifact(t, store, "kind: App\nmetadata: {name: edited}\n", nil)
	editReferrer(t, store, sig.Digest, subject, edited)

	for _, tc := range []struct {
		name    string
		subject ocispec.Descriptor
		keys    []*sign.PublicKey
		want    error
		detail  string
	}{
		{"tampered manifest", tampered, []*sign.PublicKey{pub}, sign.ErrUnsigned, ""},
		{"tampered layer", otherLayer, []*sign.PublicKey{pub}, sign.ErrUnsigned, ""},
		{"wrong key", subject, []*sign.PublicKey{wrong}, sign.ErrBadSignature, "verif"},
		{"no key", subject, nil, sign.ErrBadSignature, "no key"},
		{"signature moved to another artifact", moved, []*sign.PublicKey{pub}, sign.ErrBadSignature, "digest"},
		{"edited envelope", edited, []*sign.PublicKey{pub}, sign.ErrBadSignature, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := sign.Verify(ctx, store, tc.subject, tc.keys, sign.VerifyOptions{Content: true})
			if !errors.Is(err, tc.want) || res.Verified {
				t.Fatalf("Verify = %+v, %v; want %v", res, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not say %q", err, tc.detail)
			}
		})
	}

	// A layer blob altered in place (same digest in the manifest, other
	// bytes on disk) is found by the content check, signature or not.
	var m ocispec.Manifest
	b, _ := content.FetchAll(ctx, store, subject)
	json.Unmarshal(b, &m)
	blob := filepath.Join(dir, "blobs", "sha256", m.Layers[0].Digest.Encoded())
	if err := os.WriteFile(blob, []byte("kind: App\nmetadata: {name: EVIL}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = sign.Verify(ctx, store, subject, []*sign.PublicKey{pub}, sign.VerifyOptions{Content: true})
	if !errors.Is(err, sign.ErrTampered) || !strings.Contains(err.Error(), "layer web") {
		t.Errorf("Verify after altering a layer blob = %v, want ErrTampered naming layer web", err)
	}
}

// copyReferrer attaches the bundle of referrer sigDigest to subject.
func copyReferrer(t *testing.T, store *oci.Store, sigDigest string, subject ocispec.Descriptor) {
	t.Helper()
	m := referrer(t, store, sigDigest)
	attach(t, store, m.Layers[0], subject)
}

// editReferrer attaches to subject a copy of the bundle whose DSSE payload
// names subject instead of was, keeping the original signature.
func editReferrer(t *testing.T, store *oci.Store, sigDigest string, was, subject ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	m := referrer(t, store, sigDigest)
	raw, err := content.FetchAll(ctx, store, m.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	json.Unmarshal(raw, &b)
	env := b["dsseEnvelope"].(map[string]any)
	payload, _ := decodeB64(env["payload"].(string))
	payload = bytes.ReplaceAll(payload, []byte(was.Digest.Encoded()), []byte(subject.Digest.Encoded()))
	env["payload"] = encodeB64(payload)
	raw, _ = json.Marshal(b)
	d := content.NewDescriptorFromBytes(sign.BundleMediaType, raw)
	if err := store.Push(ctx, d, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	attach(t, store, d, subject)
}

func referrer(t *testing.T, store *oci.Store, digest string) ocispec.Manifest {
	t.Helper()
	ctx := context.Background()
	d, err := store.Resolve(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := content.FetchAll(ctx, store, d)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	json.Unmarshal(b, &m)
	return m
}

func attach(t *testing.T, store *oci.Store, layer, subject ocispec.Descriptor) {
	t.Helper()
	_, err := oras.PackManifest(context.Background(), store, oras.PackManifestVersion1_1, sign.BundleMediaType,
		oras.PackManifestOptions{Subject: &subject, Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o600)
		return p
	}
	priv, pubPEM, _ := sign.GenerateKey("ecdsa-p256")
	if _, err := sign.LoadPrivateKey(write("pub.pem", string(pubPEM))); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("signing with a public key: %v", err)
	}
	if k, err := sign.LoadPublicKey(write("priv.pem", string(priv))); err != nil || k.Algorithm != "ecdsa-p256" {
		t.Errorf("public half of a private key file: %v, %v", k, err)
	}
	if _, err := sign.LoadPrivateKey(write("junk", "not pem")); err == nil || !strings.Contains(err.Error(), "not a PEM file") {
		t.Errorf("junk key: %v", err)
	}
	enc := "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
	if _, err := sign.LoadPrivateKey(write("cosign.key", enc)); err == nil || !strings.Contains(err.Error(), "unencrypted") {
		t.Errorf("encrypted cosign key: %v", err)
	}
	if _, _, err := sign.GenerateKey("rsa"); err == nil {
		t.Error("GenerateKey(rsa) succeeded")
	}
}

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }

// referrersOf lists digest's referrers in k2/hello at host: the referrers
// API, or the referrers tag schema (tag sha256-<hex>) without it.
func referrersOf(t *testing.T, host, digest string, api bool) ocispec.Index {
	t.Helper()
	u := "http://" + host + "/v2/k2/hello/referrers/" + digest
	if !api {
		u = "http://" + host + "/v2/k2/hello/manifests/" + strings.Replace(digest, ":", "-", 1)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(httpGet(t, u, "application/vnd.oci.image.index.v1+json"), &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func httpGet(t *testing.T, url, accept string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return b
}
