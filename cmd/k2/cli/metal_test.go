package cli

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/internal/fakebmc"
)

// TestMetalInventoryCheck runs `k2 metal inventory check` against two fake
// BMCs, one with a wrong password: text and JSON output, exit codes.
func TestMetalInventoryCheck(t *testing.T) {
	dir := t.TempDir()
	var inv strings.Builder
	inv.WriteString("machines:\n")
	for i, pw := range []string{"s3cret", "wrong"} {
		b := fakebmc.New(fakebmc.Options{Username: "admin", Password: pw, Systems: []fakebmc.System{
			{ID: "1", Name: "n", Manufacturer: "Acme", Model: "R1", SerialNumber: fmt.Sprintf("SN%d", i), MAC: fmt.Sprintf("52:54:00:00:00:0%d", i)}}})
		srv := httptest.NewServer(b)
		t.Cleanup(srv.Close)
		fmt.Fprintf(&inv, "  - name: rack1-u%d\n    bmc: {endpoint: %q, username: admin, passwordEnv: K2_TEST_METAL_PW}\n    mac: \"52:54:00:00:00:0%d\"\n    arch: amd64\n", i, srv.URL, i)
	}
	t.Setenv("K2_TEST_METAL_PW", "s3cret")
	path := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(path, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, dir, "metal", "inventory", "check", path)
	if code != 4 {
		t.Errorf("exit %d, want 4 (one BMC refused the password)\n%s", code, out)
	}
	for _, want := range []string{"rack1-u0", "Off", "Acme R1", "SN0", "Pxe", "rack1-u1", "bad BMC credentials", "1 of 2 BMCs could not be read"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _ = run(t, dir, "metal", "inventory", "check", path, "-o", "json")
	var rep struct {
		Servers []struct {
			Name, PowerState, SerialNumber, Kind string
			OK                                   bool
		}
		Failed int
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if rep.Failed != 1 || !rep.Servers[0].OK || rep.Servers[0].SerialNumber != "SN0" || rep.Servers[1].Kind != "bad-credentials" {
		t.Errorf("json report: %+v", rep)
	}
	if err := os.WriteFile(path, []byte("machines:\n  - name: x\n    mac: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, dir, "metal", "inventory", "check", path)
	if code != 3 || !strings.Contains(out, "inventory.yaml:2: machines[0] (x): mac \"nope\"") {
		t.Errorf("invalid inventory: exit %d\n%s", code, out)
	}
}
