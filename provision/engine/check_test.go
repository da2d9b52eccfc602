package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func TestCheckCapabilities(t *testing.T) {
	classes := &sdk.Capabilities{
		Architectures: []string{"amd64"}, MaxMachines: 3, BootstrapMethods: []string{sdk.BootstrapUserData},
		Classes: []sdk.MachineClass{{Name: "small", CPU: 2, MemoryBytes: 4 << 30}},
	}
	str := func(s string) *string { return &s }
	env := &state.Environment{Name: "dev", Provider: "cloud", Values: map[string]string{}}
	for _, tc := range []struct {
		name string
		cfg  artifact.Config
		sets map[string]string
		want []string // capability errors, "" for none
	}{
		{"fits", artifact.Config{Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1", CPU: "2", Memory: "4Gi"}}}, nil, nil},
		{"too big", artifact.Config{Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1", CPU: "3", Memory: "40Gi"}}}, nil,
			[]string{"pool control-plane: size: no machine class of provider cloud has 3 CPU, 40Gi memory (classes: small=2 CPU, 4Gi memory)"}},
		{"arch and count", artifact.Config{Machines: []artifact.MachineSpec{
			{Pool: "control-plane", Count: "1", Arch: "arm64"}, {Pool: "worker", Count: "5"}}}, nil,
			[]string{"pool control-plane: arch: provider cloud does not offer arm64 (it offers amd64)", "pool worker: count: 5 machines, but provider cloud makes at most 3 per request"}},
		// A pool sized by an ARG without a value is not checked yet, and the
		// missing ARG is not the provider's problem.
		{"missing arg", artifact.Config{Args: []artifact.ArgSpec{{Name: "workers"}, {Name: "image"}},
			Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "${workers}"}},
			Apps:     []artifact.AppSpec{{Name: "web", Image: "${image}"}}}, nil, nil},
		{"missing arg, other pool too big", artifact.Config{Args: []artifact.ArgSpec{{Name: "workers"}},
			Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1", Memory: "64Gi"}, {Pool: "worker", Count: "${workers}"}}}, nil,
			[]string{"pool control-plane: size: no machine class of provider cloud has 64Gi memory (classes: small=2 CPU, 4Gi memory)"}},
		{"arg default counts", artifact.Config{Args: []artifact.ArgSpec{{Name: "workers", Default: str("9")}},
			Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "${workers}"}}}, nil,
			[]string{"pool worker: count: 9 machines, but provider cloud makes at most 3 per request"}},
		{"set wins", artifact.Config{Args: []artifact.ArgSpec{{Name: "workers", Default: str("9")}},
			Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "${workers}"}}}, map[string]string{"workers": "2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := engine.CheckCapabilities(engine.PlanOptions{Env: env, Config: &tc.cfg, Sets: tc.sets, Capabilities: classes})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ue *usererr.Error
			if !errors.As(err, &ue) || ue.Kind != usererr.KindProvider {
				t.Fatalf("error %v is not a provider error", err)
			}
			if diff := cmp.Diff(tc.want, strings.Split(ue.Err.Error(), "\n")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateProviderWithLocal(t *testing.T) {
	ctx := context.Background()
	prov := local.New()
	d, _ := prov.Describe(ctx, &sdk.DescribeRequest{})
	env := &state.Environment{Name: "dev", Provider: "local", UID: "u1"}
	p, err := engine.NewPlan(engine.PlanOptions{Env: env, Capabilities: &d.Capabilities, Config: &artifact.Config{
		Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "3", CPU: "2", Memory: "1Gi"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(map[string]string{"stateDir": t.TempDir(), "network": "host"})
	ds, err := engine.ValidateProvider(ctx, prov, good, p)
	if err != nil || ds.HasErrors() {
		t.Fatalf("valid settings: %v %v", ds, err)
	}
	bad, _ := json.Marshal(map[string]string{"stateDir": "relative/dir", "runtime": "docker"})
	ds, err = engine.ValidateProvider(ctx, prov, bad, p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.Path)
	}
	if diff := cmp.Diff([]string{"config.stateDir", "config.runtime"}, got); diff != "" {
		t.Errorf("diagnostic paths (-want +got):\n%s\n%v", diff, ds)
	}
}
