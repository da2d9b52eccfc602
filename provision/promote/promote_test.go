package promote_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/provision/promote"
	"k2.dev/k2/state"
)

func TestTargetRef(t *testing.T) {
	const d = "@sha256:0123"
	for _, tc := range []struct{ src, fromReg, toReg, want string }{
		{"127.0.0.1:5000/hello" + d, "", "", "127.0.0.1:5000/hello" + d},
		{"127.0.0.1:5000/team/hello" + d, "", "127.0.0.1:5001", "127.0.0.1:5001/team/hello" + d},
		{"127.0.0.1:5000/team/hello" + d, "127.0.0.1:5000/team", "reg.prod:5000/mirror", "reg.prod:5000/mirror/hello" + d},
		{"hello" + d, "", "127.0.0.1:5001/k2", "127.0.0.1:5001/k2/hello" + d},
	} {
		if got := promote.TargetRef(tc.src, tc.fromReg, tc.toReg); got != tc.want {
			t.Errorf("TargetRef(%s, %q, %q) = %s, want %s", tc.src, tc.fromReg, tc.toReg, got, tc.want)
		}
	}
}

func writeKey(t *testing.T, dir, alg string) (priv, pub string) {
	t.Helper()
	privPEM, pubPEM, err := sign.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, alg+".key"), filepath.Join(dir, alg+".pub")
	os.WriteFile(priv, privPEM, 0o600)
	os.WriteFile(pub, pubPEM, 0o644)
	return priv, pub
}

func TestGatesAndPolicy(t *testing.T) {
	dir := t.TempDir()
	_, pub := writeKey(t, dir, "ed25519")
	_, pub2 := writeKey(t, dir, "ecdsa-p256")
	var pol state.Policy
	if err := promote.ApplyGates(&pol, []string{"healthy=90s", "signed-by=" + pub, "signed-by=" + pub2, "signed-by=" + pub, "approval"}); err != nil {
		t.Fatal(err)
	}
	if pol.HealthyFor.Duration != 90*time.Second || len(pol.SignedBy) != 2 || !pol.Approval {
		t.Fatalf("policy = %+v", pol)
	}
	if err := promote.ApplyGates(&pol, []string{"approval-", "healthy-"}); err != nil {
		t.Fatal(err)
	}
	if pol.HealthyFor.Duration != 0 || pol.Approval || len(pol.SignedBy) != 2 {
		t.Fatalf("after removing two gates: %+v", pol)
	}
	if err := promote.ApplyGates(&pol, []string{"none"}); err != nil || !pol.IsZero() {
		t.Fatalf("none: %+v, %v", pol, err)
	}
	for _, bad := range []string{"healthy=soon", "healthy=-1s", "signed-by=", "signed-by=" + filepath.Join(dir, "missing.pub"), "approval=maybe", "speedy=1", "quick-"} {
		if err := promote.ApplyGates(&pol, []string{bad}); err == nil {
			t.Errorf("--gate %s accepted", bad)
		}
	}

	pf := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pf, []byte("healthyFor: 10m\nsignedBy: [ed25519.pub]\napproval: true\n"), 0o644)
	got, err := promote.ReadPolicyFile(pf)
	if err != nil {
		t.Fatal(err)
	}
	want := promote.Describe(state.Policy{HealthyFor: state.Duration{Duration: 10 * time.Minute}, SignedBy: got.SignedBy, Approval: true})
	if diff := cmp.Diff(want, promote.Describe(got)); diff != "" || len(got.SignedBy) != 1 || got.SignedBy[0].Source != pub {
		t.Errorf("policy file (-want +got):\n%s\n%+v", diff, got)
	}
	os.WriteFile(pf, []byte("healthyFor: 10m\napprovers: [x]\n"), 0o644)
	if _, err := promote.ReadPolicyFile(pf); err == nil || !strings.Contains(err.Error(), "approvers") {
		t.Errorf("unknown field: %v", err)
	}
}

// world is a state store with environments and a local artifact store
// holding one artifact.
type world struct {
	s      *state.Store
	store  *artifact.Store
	gates  *promote.Gates
	digest string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	home := t.TempDir()
	s, err := state.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	store, err := artifact.OpenStore(ctx, artifact.StoreDir(home))
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(`{"version":"k2.dev/cluster/v1"}`)
	cd := content.NewDescriptorFromBytes(artifact.ConfigMediaType, cfg)
	if err := store.Storage().Push(ctx, cd, strings.NewReader(string(cfg))); err != nil {
		t.Fatal(err)
	}
	d, err := oras.PackManifest(ctx, store.Storage(), oras.PackManifestVersion1_1, artifact.ArtifactType,
		oras.PackManifestOptions{ConfigDescriptor: &cd, ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: artifact.FixedCreated}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Tag(ctx, d, "hello:v1"); err != nil {
		t.Fatal(err)
	}
	for _, e := range []state.Environment{
		{Name: "staging", Provider: "local"},
		{Name: "prod", Provider: "local", Registry: "127.0.0.1:1/mirror"},
	} {
		if _, err := s.CreateEnv(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return &world{s: s, store: store, digest: d.Digest.String(),
		gates: &promote.Gates{State: s, Artifacts: store, Home: home}}
}

func (w *world) deployed(t *testing.T, env string, r state.Result) {
	t.Helper()
	ctx := context.Background()
	dep, err := w.s.BeginDeployment(ctx, state.Deployment{Env: env, ArtifactRef: "hello:v1", ArtifactDigest: w.digest})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.s.FinishDeployment(ctx, dep.ID, r, ""); err != nil {
		t.Fatal(err)
	}
}

func TestPlanGates(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dir := t.TempDir()
	priv, pub := writeKey(t, dir, "ed25519")

	if _, err := w.gates.Plan(ctx, "staging", "prod"); err == nil || !strings.Contains(err.Error(), "not deployed") {
		t.Fatalf("promoting an environment never deployed: %v", err)
	}
	if _, err := w.gates.Plan(ctx, "staging", "nope"); err == nil || !strings.Contains(err.Error(), "k2 env create nope") {
		t.Fatalf("promoting to a missing environment: %v", err)
	}
	w.deployed(t, "staging", state.Succeeded)
	p, err := w.gates.Plan(ctx, "staging", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if p.Refused || len(p.Gates) != 0 || !p.Copy || p.Digest != w.digest ||
		p.SourceRef != "hello@"+w.digest || p.TargetRef != "127.0.0.1:1/mirror/hello@"+w.digest || p.Err() != nil {
		t.Fatalf("plan without gates = %+v", p)
	}

	if _, err := promote.Configure(ctx, w.s, "prod", promote.Settings{Gates: []string{"signed-by=" + pub, "approval"}}); err != nil {
		t.Fatal(err)
	}
	p, err = w.gates.Plan(ctx, "staging", "prod")
	if err != nil {
		t.Fatal(err)
	}
	err = p.Err()
	var re *promote.RefusedError
	if !p.Refused || !errors.As(err, &re) || len(re.Failed) != 2 ||
		!strings.Contains(err.Error(), "gate signed-by: hello@"+w.digest+": no signature") ||
		!strings.Contains(err.Error(), "gate approval: nobody approved") ||
		!strings.Contains(err.Error(), "k2 approve prod "+w.digest) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("refusal = %v", err)
	}

	key, err := sign.LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sign.SignRef(ctx, w.store, "hello:v1", key, artifact.RemoteOptions{}, sign.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.Approve(ctx, state.Approval{Env: "prod", Digest: w.digest, Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	p, err = w.gates.Plan(ctx, "staging", "prod")
	if err != nil || p.Refused || p.Err() != nil || len(p.Gates) != 2 {
		t.Fatalf("plan with a signature and an approval = %+v, %v", p, err)
	}
	if !strings.Contains(p.Gates[1].Reason, "approved by alice") || !strings.Contains(p.Gates[0].Reason, "signed by") {
		t.Errorf("gate reasons = %+v", p.Gates)
	}

	// A failed upgrade of the source stops promotions of what it ran before.
	w.deployed(t, "staging", state.Failed)
	if _, err := w.gates.Plan(ctx, "staging", "prod"); err == nil || !strings.Contains(err.Error(), "is failed") {
		t.Fatalf("source whose last deployment failed: %v", err)
	}

	// A rollback checks the signature gate but not the approval.
	prod, _ := w.s.GetEnv(ctx, "prod")
	res, err := w.gates.Check(ctx, promote.Subject{Env: prod, Op: state.OpRollback, Digest: w.digest, Ref: "hello:v1"})
	if err != nil || len(res) != 1 || res[0].Gate != promote.GateSignedBy || !res[0].Passed {
		t.Errorf("rollback gates = %+v, %v", res, err)
	}
	// --verify-key with a key that did not sign refuses a deploy.
	_, other := writeKey(t, t.TempDir(), "ecdsa-p256")
	ok, _ := sign.LoadPublicKey(other)
	res, err = w.gates.Check(ctx, promote.Subject{Env: prod, Op: state.OpDeploy, Digest: w.digest, Ref: "hello:v1", VerifyKeys: []*sign.PublicKey{ok}})
	if err != nil || promote.Refusal("prod", state.OpDeploy, w.digest, "hello:v1", res) == nil {
		t.Errorf("--verify-key with another key: %+v, %v", res, err)
	}
}
