package metal

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/fakebmc"
	"k2.dev/k2/providers/sdk"
)

// lab is a set of fake BMCs, one per server, and an inventory naming them.
type lab struct {
	bmcs      map[string]*fakebmc.BMC
	urls      map[string]string
	inventory string
	stateDir  string
	pwFile    string
}

// newLab starts n fake BMCs (servers s0..s(n-1), MACs 52:54:00:00:00:0i);
// edit tweaks each server's inventory entry before it is written.
func newLab(t *testing.T, n int, edit func(i int, s *Server)) *lab {
	t.Helper()
	dir := t.TempDir()
	l := &lab{bmcs: map[string]*fakebmc.BMC{}, urls: map[string]string{}, stateDir: filepath.Join(dir, "state"), pwFile: filepath.Join(dir, "bmc-password")}
	if err := os.WriteFile(l.pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := Inventory{}
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		mac := fmt.Sprintf("52:54:00:00:00:%02x", i)
		b := fakebmc.New(fakebmc.Options{Username: "admin", Password: "s3cret", Systems: []fakebmc.System{
			{ID: "1", Name: name, Manufacturer: "k2", Model: "FakeServer", SerialNumber: fmt.Sprintf("SN-%04d", i), MAC: mac},
		}})
		srv := httptest.NewServer(b)
		t.Cleanup(srv.Close)
		l.bmcs[name], l.urls[name] = b, srv.URL
		s := Server{Name: name, MAC: mac, Arch: "amd64", BMC: BMC{Endpoint: srv.URL, Username: "admin", PasswordFile: l.pwFile}}
		if edit != nil {
			edit(i, &s)
		}
		inv.Machines = append(inv.Machines, s)
	}
	l.inventory = filepath.Join(dir, "inventory.yaml")
	writeInventory(t, l.inventory, inv)
	return l
}

func writeInventory(t *testing.T, path string, inv Inventory) {
	t.Helper()
	var b strings.Builder
	b.WriteString("machines:\n")
	for _, s := range inv.Machines {
		fmt.Fprintf(&b, "  - name: %s\n    bmc: {endpoint: %q, username: %s", s.Name, s.BMC.Endpoint, s.BMC.Username)
		if s.BMC.PasswordEnv != "" {
			fmt.Fprintf(&b, ", passwordEnv: %s", s.BMC.PasswordEnv)
		}
		if s.BMC.PasswordFile != "" {
			fmt.Fprintf(&b, ", passwordFile: %q", s.BMC.PasswordFile)
		}
		if s.BMC.BasicAuth {
			b.WriteString(", basicAuth: true")
		}
		fmt.Fprintf(&b, "}\n    mac: %q\n    arch: %s\n", s.MAC, s.Arch)
		if s.Role != "" {
			fmt.Fprintf(&b, "    role: %s\n", s.Role)
		}
		if s.CPU != 0 {
			fmt.Fprintf(&b, "    cpu: %d\n", s.CPU)
		}
		if s.Disk != "" {
			fmt.Fprintf(&b, "    disk: %q\n", s.Disk)
		}
		if s.Address != "" {
			fmt.Fprintf(&b, "    address: %s\n", s.Address)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// config is the provider config for the lab plus extra settings.
func (l *lab) config(t testing.TB, extra map[string]any) sdk.Config {
	t.Helper()
	m := map[string]any{"inventory": l.inventory, "stateDir": l.stateDir}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fastRetry keeps error-path tests quick: 3 tries, 10 ms apart.
var fastRetry = retryPolicy{Attempts: 3, Backoff: 10 * time.Millisecond, Timeout: 2 * time.Second}

func newTestProvider() *Provider {
	return &Provider{retry: &fastRetry, Log: slog.New(slog.DiscardHandler)}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
