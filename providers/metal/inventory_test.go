package metal

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseInventory(t *testing.T) {
	good := `machines:
  - name: rack1-u1
    bmc: {endpoint: "https://10.0.0.21", username: admin, passwordEnv: BMC_PASSWORD}
    mac: "52:54:00:12:34:56"
    arch: amd64
    role: control-plane
  - name: rack1-u2
    bmc: {endpoint: "https://10.0.0.22", username: admin, passwordFile: /etc/k2/bmc-pw, insecure: true}
    mac: "52-54-00-12-34-57"
    arch: arm64
    cpu: 16
    memory: 64Gi
`
	inv, err := ParseInventory("inv.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"52:54:00:12:34:56", "52:54:00:12:34:57"}, []string{inv.Machines[0].MAC, inv.Machines[1].MAC}); diff != "" {
		t.Errorf("MACs (-want +got):\n%s", diff)
	}
	if inv.Machines[1].Line != 7 || inv.Machines[1].MemoryBytes() != 64<<30 {
		t.Errorf("line %d memory %d", inv.Machines[1].Line, inv.Machines[1].MemoryBytes())
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"InlinePassword", `machines:
  - name: a
    bmc: {endpoint: "https://10.0.0.1", username: admin, password: hunter2}
    mac: "52:54:00:00:00:01"
    arch: amd64
`, "inv.yaml:2: machines[0] (a): bmc.password: inline passwords are refused; put it in an environment variable (passwordEnv) or a file (passwordFile)"},
		{"NoPassword", `machines:
  - name: a
    bmc: {endpoint: "https://10.0.0.1", username: admin}
    mac: "52:54:00:00:00:01"
    arch: amd64
`, "inv.yaml:2: machines[0] (a): bmc: set passwordEnv (an environment variable) or passwordFile (a file) for the password"},
		{"Many", `machines:
  - name: a
    bmc: {endpoint: "10.0.0.1", username: admin, passwordEnv: X}
    mac: "zz"
    arch: x86
  - name: a
    bmc: {endpoint: "https://10.0.0.2", username: admin, passwordEnv: X}
    mac: "52:54:00:00:00:01"
    arch: amd64
    role: master
`, `inv.yaml:2: machines[0] (a): bmc.endpoint "10.0.0.1" must be an http(s) URL such as https://10.0.0.21
inv.yaml:2: machines[0] (a): mac "zz" is not a MAC address such as 52:54:00:12:34:56
inv.yaml:2: machines[0] (a): arch "x86": use amd64 or arm64
inv.yaml:6: machines[1] (a): name "a" is also machines[0]
inv.yaml:6: machines[1] (a): role "master": use control-plane or worker (or leave it out)`},
		{"UnknownKey", `machines:
  - name: a
    bmcs: {}
`, "inv.yaml: invalid inventory: line 3: field bmcs not found in type metal.Server"},
		{"Empty", `machines: []`, "inv.yaml: no machines listed; see docs/metal.md for the inventory's shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseInventory("inv.yaml", []byte(tc.yaml))
			if !errors.Is(err, ErrInventory) {
				t.Fatalf("err %v, want ErrInventory", err)
			}
			got := strings.TrimPrefix(err.Error(), "invalid inventory:\n")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
