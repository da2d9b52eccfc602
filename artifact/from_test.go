package artifact_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/registrytest"
)

// TestFromTwoLevels builds base → mid → app: the app inherits the layers of
// both, in order, the settings of both (later ones override), and records
// the chain with pinned digests. The mid level is pushed to a registry and
// pulled by the app build, by tag and by digest.
func TestFromTwoLevels(t *testing.T) {
	ctx := context.Background()
	host := registrytest.New(t)
	s := newStore(t)

	baseDir := writeTree(t, map[string]string{
		"K8sfile": `FROM k2/base:v1.37
ARG region=eu
ARG size=small
LABEL team=platform
ADD ./net
MACHINES control-plane=3 cpu=4
`,
		"net/policy.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\n",
	})
	base := mustBuild(t, s, baseDir, "platform/base:v1", nil)

	midDir := writeTree(t, map[string]string{
		"K8sfile": `FROM platform/base:v1
ARG size=medium
LABEL tier=mid
ADD ./ops
APP monitor image=prom/prometheus:v3 port=9090
MACHINES control-plane=1
MACHINES worker=2
`,
		"ops/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ops\n",
	})
	mid := mustBuild(t, s, midDir, host+"/platform/mid:v1", nil)
	if _, _, err := artifact.Push(ctx, s, host+"/platform/mid:v1", artifact.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, from := range []string{host + "/platform/mid:v1", host + "/platform/mid@" + mid.Digest} {
		t.Run(strings.TrimPrefix(from, host), func(t *testing.T) {
			s2 := newStore(t) // the app's builder has only the registry
			appDir := writeTree(t, map[string]string{
				"K8sfile": "FROM " + from + `
ARG replicas=3
APP web image=nginx:1.27 port=80 replicas=${replicas}
`,
			})
			app := mustBuild(t, s2, appDir, "shop:v1", nil)
			c := app.Config

			var names, origins []string
			for _, l := range c.Layers {
				names = append(names, l.Name)
				origins = append(origins, l.From)
			}
			if diff := cmp.Diff([]string{"k2-system", "net", "ops", "monitor", "web"}, names); diff != "" {
				t.Errorf("layers (-want +got):\n%s", diff)
			}
			wantFrom := []string{"k2/base:v1.37", "platform/base:v1", normalized(t, from), normalized(t, from), ""}
			if diff := cmp.Diff(wantFrom, origins); diff != "" {
				t.Errorf("layer origins (-want +got):\n%s", diff)
			}
			var chain []string
			for _, b := range c.Base {
				chain = append(chain, b.Ref+"@"+b.Digest)
			}
			builtin, _ := artifact.EnsureBuiltin(ctx, newStore(t), "k2/base:v1.37")
			wantChain := []string{
				normalized(t, from) + "@" + mid.Digest,
				"platform/base:v1@" + base.Digest,
				"k2/base:v1.37@" + builtin.Digest.String(),
			}
			if diff := cmp.Diff(wantChain, chain); diff != "" {
				t.Errorf("base chain (-want +got):\n%s", diff)
			}
			def := func(s string) *string { return &s }
			wantArgs := []artifact.ArgSpec{{Name: "region", Default: def("eu")}, {Name: "size", Default: def("medium")}, {Name: "replicas", Default: def("3")}}
			if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			wantMachines := []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "2"}}
			if diff := cmp.Diff(wantMachines, c.Machines); diff != "" {
				t.Errorf("machines (-want +got):\n%s", diff)
			}
			if c.Labels["team"] != "platform" || c.Labels["tier"] != "mid" {
				t.Errorf("labels = %v", c.Labels)
			}
			if len(c.Apps) != 2 || c.Apps[0].Name != "monitor" || c.Apps[1].Name != "web" {
				t.Errorf("apps = %+v", c.Apps)
			}
			if c.Kubernetes != "v1.37.2" {
				t.Errorf("kubernetes = %q", c.Kubernetes)
			}
			// Inherited layers are the base's blobs, byte for byte.
			a, err := artifact.Open(ctx, s2, "shop:v1", false, artifact.RemoteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Manifest.Layers[1].Digest.String(); got != base.Config.Layers[1].Digest {
				t.Errorf("inherited layer digest %s, base has %s", got, base.Config.Layers[1].Digest)
			}
		})
	}
}

func normalized(t *testing.T, ref string) string {
	t.Helper()
	r, err := artifact.NormalizeRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFromErrors(t *testing.T) {
	s := newStore(t)
	for name, tc := range map[string]struct{ k8sfile, want string }{
		"missing local base": {"FROM nothere:v1\n", "K8sfile:1:1: FROM: base nothere:v1 is not in the local store"},
		"duplicate layer":    {"FROM k2/base:v1.37\nADD ./m as k2-system\n", "K8sfile:2:1: ADD: layer name \"k2-system\" is already used by base k2/base:v1.37"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"K8sfile": tc.k8sfile, "m/a.yaml": "kind: ConfigMap\nmetadata: {name: a}\n"})
			_, err := build(t, s, dir, "x:v1", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestFromPull: a base tag moved in the registry is seen with Pull, and the
// new digest is pinned; without Pull the store's copy is used.
func TestFromPull(t *testing.T) {
	ctx := context.Background()
	host := registrytest.New(t)
	ref := host + "/platform/base:v1"
	publisher := newStore(t)
	mk := func(content string) string {
		dir := writeTree(t, map[string]string{"K8sfile": "FROM scratch\nADD ./m\n", "m/cm.yaml": content})
		res := mustBuild(t, publisher, dir, ref, nil)
		if _, _, err := artifact.Push(ctx, publisher, ref, artifact.RemoteOptions{}); err != nil {
			t.Fatal(err)
		}
		return res.Digest
	}
	v1 := mk("kind: ConfigMap\nmetadata: {name: one}\n")
	s := newStore(t)
	app := writeTree(t, map[string]string{"K8sfile": "FROM " + ref + "\nAPP web image=nginx:1.27\n"})
	if got := mustBuild(t, s, app, "app:v1", nil).Config.Base[0].Digest; got != v1 {
		t.Fatalf("first build pinned %s, want %s", got, v1)
	}
	v2 := mk("kind: ConfigMap\nmetadata: {name: two}\n")
	if got := mustBuild(t, s, app, "app:v1", nil).Config.Base[0].Digest; got != v1 {
		t.Errorf("without pull: pinned %s, want the stored %s", got, v1)
	}
	if got := mustBuild(t, s, app, "app:v1", func(o *artifact.BuildOptions) { o.Pull = true }).Config.Base[0].Digest; got != v2 {
		t.Errorf("with pull: pinned %s, want the moved tag's %s", got, v2)
	}
}

// TestFromInheritsControlPlane: a K8sfile built FROM a base may add worker
// pools only (the base's control-plane pool is kept); one whose base has no
// control-plane pool either is refused.
func TestFromInheritsControlPlane(t *testing.T) {
	s := newStore(t)
	child := writeTree(t, map[string]string{"K8sfile": "FROM k2/base:v1.37\nMACHINES worker=5\n"})
	res := mustBuild(t, s, child, "child:v1", nil)
	pools := map[string]string{}
	for _, m := range res.Config.Machines {
		pools[m.Pool] = m.Count
	}
	if diff := cmp.Diff(map[string]string{"control-plane": "1", "worker": "5"}, pools); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	bare := writeTree(t, map[string]string{"K8sfile": "FROM scratch\nADD ./m\n", "m/a.yaml": "kind: ConfigMap\nmetadata: {name: a}\n"})
	mustBuild(t, s, bare, "bare:v1", nil)
	orphan := writeTree(t, map[string]string{"K8sfile": "FROM bare:v1\nMACHINES worker=2\n"})
	if _, err := build(t, s, orphan, "orphan:v1", nil); err == nil || !strings.Contains(err.Error(), "no control-plane pool here or in the base bare:v1") {
		t.Errorf("err = %v, want a missing control-plane error", err)
	}
}
