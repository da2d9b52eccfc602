package sign_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
)

// TestSignatureTravels signs an artifact in the local store, pushes it to a
// registry without the referrers API, copies it from there to one with it,
// pulls it into another store, and checks the signature at every stop.
func TestSignatureTravels(t *testing.T) {
	ctx := context.Background()
	store, err := artifact.OpenStore(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := pushArtifact(t, store.Storage(), "kind: App\n", nil)
	if err := store.Tag(ctx, d, "hello:v1"); err != nil {
		t.Fatal(err)
	}
	priv, pub, _ := keys(t, "ecdsa-p256")
	_, other, _ := keys(t, "ed25519")
	var ro artifact.RemoteOptions

	if s := sign.Status(ctx, store, "hello:v1", []*sign.PublicKey{pub}, ro); s.State != sign.StateUnsigned {
		t.Errorf("status before signing = %+v", s)
	}
	sig, ref, err := sign.SignRef(ctx, store, "hello:v1", priv, ro, sign.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ref != "hello@"+d.Digest.String() || sig.Subject != d.Digest.String() {
		t.Errorf("SignRef = %+v, %s", sig, ref)
	}
	for _, tc := range []struct {
		keys []*sign.PublicKey
		want sign.State
	}{{[]*sign.PublicKey{pub}, sign.StateVerified}, {[]*sign.PublicKey{other}, sign.StateInvalid}, {nil, sign.StateSigned}} {
		if s := sign.Status(ctx, store, "hello:v1", tc.keys, ro); s.State != tc.want || s.Signatures != 1 {
			t.Errorf("status with %d keys = %+v, want %s", len(tc.keys), s, tc.want)
		}
	}

	hostA, _ := newRegistry(t, false)
	hostB, _ := newRegistry(t, true)
	refA := hostA + "/team/hello:v1"
	if err := store.Tag(ctx, d, refA); err != nil {
		t.Fatal(err)
	}
	pinned, _, err := artifact.Push(ctx, store, refA, ro)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.VerifyRef(ctx, store, pinned, []*sign.PublicKey{pub}, ro, sign.VerifyOptions{Content: true}); err != nil {
		t.Fatalf("after push: %v", err)
	}
	refB := hostB + "/prod/hello@" + d.Digest.String()
	if _, err := artifact.Copy(ctx, store, pinned, refB, ro); err != nil {
		t.Fatal(err)
	}
	res, err := sign.VerifyRef(ctx, store, refB, []*sign.PublicKey{other, pub}, ro, sign.VerifyOptions{Content: true})
	if err != nil || res.Ref != refB || res.Key.ID != pub.ID {
		t.Fatalf("after copy to another registry: %+v, %v", res, err)
	}
	fresh, err := artifact.OpenStore(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Pull(ctx, fresh, refB, ro); err != nil {
		t.Fatal(err)
	}
	// The pulled copy in the fresh store carries the signature: verify it
	// from the store (no registry) by copying it to a tag without a host.
	if _, err := artifact.Copy(ctx, fresh, refB, "mirror/hello:v1", ro); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.VerifyRef(ctx, fresh, "mirror/hello:v1", []*sign.PublicKey{pub}, ro, sign.VerifyOptions{Content: true}); err != nil {
		t.Fatalf("in the store after a pull: %v", err)
	}

	// An unsigned artifact in the same registry is refused with the hint.
	d2 := pushArtifact(t, store.Storage(), "kind: App\nspec: {}\n", nil)
	store.Tag(ctx, d2, hostA+"/team/hello:v2")
	p2, _, err := artifact.Push(ctx, store, hostA+"/team/hello:v2", ro)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sign.VerifyRef(ctx, store, p2, []*sign.PublicKey{pub}, ro, sign.VerifyOptions{})
	if !errors.Is(err, sign.ErrUnsigned) || !strings.Contains(err.Error(), "k2 sign") {
		t.Errorf("unsigned: %v", err)
	}
}
