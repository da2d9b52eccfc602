package sdk_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/providers/sdk"
)

func paths(ds sdk.Diagnostics) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Severity+" "+d.Path)
	}
	return out
}

func TestCheckConfig(t *testing.T) {
	schema := []sdk.ConfigField{
		{Name: "region", Type: sdk.TypeString, Required: true},
		{Name: "count", Type: sdk.TypeInt},
		{Name: "debug", Type: sdk.TypeBool},
		{Name: "timeout", Type: sdk.TypeDuration},
		{Name: "zones", Type: sdk.TypeList},
	}
	for _, tc := range []struct {
		name, cfg string
		want      []string
	}{
		{"Valid", `{"region":"r1","count":3,"debug":true,"timeout":"30s","zones":["a","b"]}`, nil},
		{"MissingRequired", `{}`, []string{"error config.region"}},
		{"EmptyConfig", ``, []string{"error config.region"}},
		{"WrongTypes", `{"region":1,"count":1.5,"debug":"yes","timeout":"soon","zones":[1]}`,
			[]string{"error config.count", "error config.debug", "error config.region", "error config.timeout", "error config.zones"}},
		{"Unknown", `{"region":"r","colour":"blue"}`, []string{"error config.colour"}},
		{"NotAnObject", `[1]`, []string{"error config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, paths(sdk.CheckConfig(schema, sdk.Config(tc.cfg)))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckMachines(t *testing.T) {
	caps := sdk.Capabilities{
		Architectures: []string{"amd64"}, Classes: []sdk.MachineClass{{Name: "small"}},
		MaxMachines: 2, BootstrapMethods: []string{sdk.BootstrapExec},
	}
	exec := &sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"true"}}
	for _, tc := range []struct {
		name string
		ms   []sdk.MachineRequest
		b    *sdk.Bootstrap
		want []string
	}{
		{"Valid", []sdk.MachineRequest{{Name: "a", Arch: "amd64", Class: "small"}, {Name: "b"}}, exec, nil},
		{"TooMany", []sdk.MachineRequest{{Name: "a"}, {Name: "b"}, {Name: "c"}}, nil, []string{"error machines"}},
		{"Arch", []sdk.MachineRequest{{Name: "a", Arch: "riscv64"}}, nil, []string{"error machines[0].arch"}},
		{"Class", []sdk.MachineRequest{{Name: "a", Class: "huge"}}, nil, []string{"error machines[0].class"}},
		{"CustomSize", []sdk.MachineRequest{{Name: "a", CPU: 4}}, nil, []string{"error machines[0]"}},
		{"Names", []sdk.MachineRequest{{Name: ""}, {Name: ""}}, nil, []string{"error machines[0].name", "error machines[1].name"}},
		{"Bootstrap", []sdk.MachineRequest{{Name: "a"}}, &sdk.Bootstrap{Method: sdk.BootstrapUserData}, []string{"error bootstrap.method"}},
		{"ExecWithoutCommand", []sdk.MachineRequest{{Name: "a"}}, &sdk.Bootstrap{Method: sdk.BootstrapExec}, []string{"error bootstrap.command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, paths(sdk.CheckMachines(caps, tc.ms, tc.b))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiagnosticsErr(t *testing.T) {
	var ds sdk.Diagnostics
	ds.Warnf("config.x", "deprecated")
	if ds.HasErrors() || ds.Err() != nil {
		t.Error("warnings are not errors")
	}
	ds.Errorf("machines[0].arch", "architecture %q is not offered", "s390x")
	if got := ds.Err().Error(); got != `machines[0].arch: architecture "s390x" is not offered` {
		t.Errorf("Err() = %q", got)
	}
}
