package machineconfig_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/pki"
)

// identity makes a real cluster identity (the PKI as k2 deploy makes it,
// packed as controlplane.MakeSeed packs it) and a token for its CA.
func identity(t *testing.T) (id string, token string, caHash string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	p, err := pki.Ensure(dir, pki.Options{SANs: []string{"127.0.0.1"}, ServiceIP: net.ParseIP("10.43.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range []string{pki.CACert, pki.CAKey, pki.ServingCert} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(&tar.Header{Name: "pki/" + name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	gz.Close()
	tok, err := join.NewToken(p.CAData)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), tok.String(), p.CAHash()
}

func TestRoundTrip(t *testing.T) {
	id, tok, hash := identity(t)
	no := false
	for _, c := range []*machineconfig.Config{
		{Role: machineconfig.RoleWorker, NodeName: "w1", Server: "https://10.0.0.5:6443", Token: tok, CAHash: hash,
			Labels:   map[string]string{"k2.dev/pool": "gpu"},
			Network:  machineconfig.Network{Interfaces: []machineconfig.Interface{{MAC: "52:54:00:12:34:56", Addresses: []string{"10.0.0.7/24"}, Gateway: "10.0.0.1"}}, Nameservers: []string{"10.0.0.1"}},
			DataDisk: &machineconfig.DataDisk{Device: machineconfig.DataDiskAuto}},
		{Role: machineconfig.RoleControlPlane, NodeName: "cp", Token: tok,
			ControlPlane: &machineconfig.ControlPlane{Identity: id, Port: 7443, JoinPort: 7444, TLSSANs: []string{"api.example.internal", "192.0.2.10"}, Node: &no}},
	} {
		for _, gz := range []bool{false, true} {
			b, err := machineconfig.Encode(c, gz)
			if err != nil {
				t.Fatal(err)
			}
			again, err := machineconfig.Encode(c, gz)
			if err != nil || !bytes.Equal(b, again) {
				t.Fatalf("Encode is not deterministic (gzip %v)", gz)
			}
			got, warn, err := machineconfig.Load(b)
			if err != nil {
				t.Fatalf("Load(gzip %v): %v\n%s", gz, err, b)
			}
			if len(warn) > 0 {
				t.Errorf("warnings: %v", warn)
			}
			want := *c
			want.APIVersion, want.Kind = machineconfig.APIVersion, machineconfig.Kind
			if d := cmp.Diff(&want, got, cmp.AllowUnexported(machineconfig.Config{}), cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".lines" }, cmp.Ignore())); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		}
	}
}

func TestDerived(t *testing.T) {
	id, tok, _ := identity(t)
	w := &machineconfig.Config{Role: machineconfig.RoleWorker, NodeName: "w1", Server: "https://10.0.0.5:7443", Token: tok}
	if got := w.JoinEndpoint(); got != "https://10.0.0.5:6444" {
		t.Errorf("JoinEndpoint = %q", got)
	}
	if w.Serves() || !w.RunsNode() || w.Hostname() != "w1" || w.RuntimeName() != "kubelet" {
		t.Errorf("worker: serves %v node %v hostname %q runtime %q", w.Serves(), w.RunsNode(), w.Hostname(), w.RuntimeName())
	}
	no := false
	cp := &machineconfig.Config{Role: machineconfig.RoleControlPlane, ControlPlane: &machineconfig.ControlPlane{Identity: id}}
	if !cp.Serves() || !cp.RunsNode() || cp.Port() != 6443 || cp.JoinPort() != 6444 {
		t.Errorf("control plane: serves %v node %v ports %d %d", cp.Serves(), cp.RunsNode(), cp.Port(), cp.JoinPort())
	}
	cp.ControlPlane.Node = &no
	if cp.RunsNode() {
		t.Error("node: false still runs a node")
	}
	joining := &machineconfig.Config{Role: machineconfig.RoleControlPlane, Server: "https://10.0.0.5:6443", Token: tok}
	if joining.Serves() || !joining.RunsNode() {
		t.Error("a control plane without identity must join as a node")
	}
}

func TestBadConfigs(t *testing.T) {
	id, tok, _ := identity(t)
	_, otherTok, otherHash := identity(t)
	head := "apiVersion: machine.k2.dev/v1\nkind: MachineConfig\n"
	worker := head + "role: worker\nserver: https://10.0.0.5:6443\ntoken: " + tok + "\n"
	cp := head + "role: control-plane\ntoken: " + tok + "\ncontrolPlane:\n  identity: " + id + "\n"
	for _, tc := range []struct {
		name, doc string
		want      []string // each must appear in the error
	}{
		{"empty", "", []string{"empty document"}},
		{"cloud-init", "#cloud-config\nruncmd: [ls]\n", []string{"cloud-init document", "machine.k2.dev/v1"}},
		{"shell script", "#!/bin/sh\necho hi\n", []string{"cloud-init document"}},
		{"not yaml", "apiVersion: [\n", []string{"machine config:"}},
		{"wrong version", "apiVersion: machine.k2.dev/v9\nkind: MachineConfig\nrole: worker\n", []string{`apiVersion "machine.k2.dev/v9"`, "reads apiVersion: machine.k2.dev/v1"}},
		{"wrong kind", "apiVersion: machine.k2.dev/v1\nkind: Pod\n", []string{`kind "Pod"`}},
		{"unknown field", worker + "tokn: x\n", []string{"line 6", "field tokn not found"}},
		{"wrong type", worker + "labels: [a]\n", []string{"line 6", "cannot unmarshal"}},
		{"two documents", worker + "---\n" + worker, []string{"more than one document"}},
		{"no role", head + "server: https://10.0.0.5:6443\ntoken: " + tok + "\n", []string{"role: missing"}},
		{"bad role", strings.Replace(worker, "role: worker", "role: master", 1), []string{`line 3: role: "master": want worker or control-plane`}},
		{"worker without server or token", head + "role: worker\n", []string{"server: missing", "token: missing"}},
		{"http server", strings.Replace(worker, "https://", "http://", 1), []string{`line 4: server: "http://10.0.0.5:6443": want https://host:port`}},
		{"server with path", strings.Replace(worker, ":6443", ":6443/api", 1), []string{"want no path"}},
		{"bad token", strings.Replace(worker, tok, "K2abc::x.y", 1), []string{"line 5: token: malformed join token", "(the value is not shown)"}},
		{"ca hash mismatch", worker + "caHash: " + otherHash + "\n", []string{"caHash: does not match the CA hash in token"}},
		{"ca hash not hex", worker + "caHash: xyz\n", []string{`caHash: "xyz": want the 64 hex`}},
		{"bad node name", worker + "nodeName: Node_1\n", []string{`line 6: nodeName: "Node_1"`}},
		{"bad label", worker + "labels:\n  \"bad key!\": v\n  ok: \"bad value!\"\n", []string{`labels: key "bad key!"`, `line 8: labels.ok: "bad value!"`}},
		{"bad runtime", worker + "runtime: docker\n", []string{`runtime: "docker": want kubelet, auto or sim`}},
		{"identity on a worker", worker + "controlPlane:\n  identity: " + id + "\n", []string{"controlPlane.identity: set on a worker"}},
		{"controlPlane on a worker", worker + "controlPlane:\n  port: 7443\n", []string{"controlPlane: set on a worker"}},
		{"identity not base64", strings.Replace(cp, id, "not*base64", 1), []string{"controlPlane.identity: not base64"}},
		{"identity not a seed", strings.Replace(cp, id, base64.StdEncoding.EncodeToString([]byte("hello")), 1), []string{"not a gzip'd tar", "k2 deploy made"}},
		{"token of another cluster", strings.Replace(cp, tok, otherTok, 1), []string{"token: is for another cluster"}},
		{"ca hash of another cluster", cp + "caHash: " + otherHash + "\n", []string{"caHash: does not match the identity's CA"}},
		{"same ports", cp + "  port: 7000\n  joinPort: 7000\n", []string{"controlPlane.joinPort: 7000 is also the API port"}},
		{"bad port", cp + "  port: 70000\n", []string{"line 7: controlPlane.port: 70000 is not a port"}},
		{"bad san", cp + "  tlsSANs: [\"not a name!\"]\n", []string{`controlPlane.tlsSANs[0]: "not a name!"`}},
		{"bad cidr", cp + "  clusterCIDR: 10.42.0.0\n", []string{`controlPlane.clusterCIDR: "10.42.0.0" is not a CIDR`}},
		{"interface without name or mac", worker + "network:\n  interfaces:\n  - dhcp: true\n", []string{"line 8: network.interfaces[0]: give name or mac"}},
		{"interface dhcp and static", worker + "network:\n  interfaces:\n  - name: eth0\n    dhcp: true\n    addresses: [10.0.0.7/24]\n", []string{"dhcp and addresses both set"}},
		{"interface neither", worker + "network:\n  interfaces:\n  - name: eth0\n", []string{"neither dhcp nor addresses"}},
		{"bad address", worker + "network:\n  interfaces:\n  - name: eth0\n    addresses: [10.0.0.7]\n", []string{`network.interfaces[0].addresses[0]: "10.0.0.7": want an address with its prefix length`}},
		{"bad mac", worker + "network:\n  interfaces:\n  - mac: zz\n    dhcp: true\n", []string{`network.interfaces[0].mac: "zz"`}},
		{"bad gateway and dns", worker + "network:\n  interfaces:\n  - name: eth0\n    dhcp: true\n    gateway: x\n  nameservers: [y]\n", []string{`gateway: "x"`, `network.nameservers[0]: "y"`}},
		{"data disk not a device", worker + "dataDisk:\n  device: /var/disk.img\n", []string{`line 7: dataDisk.device: "/var/disk.img": want a block device under /dev or "auto"`}},
		{"data disk xfs", worker + "dataDisk:\n  device: auto\n  filesystem: xfs\n", []string{`dataDisk.filesystem: "xfs": k2 OS makes only ext4`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := machineconfig.Load([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tc.doc)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), strings.SplitN(tok, "::", 2)[1]) {
				t.Errorf("error shows the token's secret: %v", err)
			}
		})
	}
	// Every problem at once.
	_, _, err := machineconfig.Load([]byte(head + "role: x\nruntime: y\nnodeName: Z\n"))
	var inv *machineconfig.InvalidError
	if !errors.As(err, &inv) || len(inv.Problems) < 4 {
		t.Errorf("want all problems in one InvalidError, got %v", err)
	}
}

func TestWarnings(t *testing.T) {
	id, tok, _ := identity(t)
	doc := "apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: control-plane\nserver: https://10.0.0.5:6443\ntoken: " + tok + "\ncontrolPlane:\n  identity: " + id + "\n"
	_, warn, err := machineconfig.Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"line 4: server: ignored: this machine serves the cluster itself"}, warn); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
}

func TestRedacted(t *testing.T) {
	id, tok, _ := identity(t)
	c := &machineconfig.Config{APIVersion: machineconfig.APIVersion, Kind: machineconfig.Kind, Role: machineconfig.RoleControlPlane, Token: tok,
		ControlPlane: &machineconfig.ControlPlane{Identity: id}}
	secret := strings.SplitN(tok, ".", 2)[1]
	b, _ := json.Marshal(c.Redacted())
	if strings.Contains(string(b), secret) || strings.Contains(string(b), id[:40]) {
		t.Errorf("Redacted leaks a secret: %s", b)
	}
	if c.Token != tok || c.ControlPlane.Identity != id {
		t.Error("Redacted changed the original")
	}
	if !strings.Contains(string(b), "REDACTED") {
		t.Errorf("Redacted: %s", b)
	}
	if s := c.LogValue().String(); strings.Contains(s, secret) {
		t.Errorf("LogValue leaks the token: %s", s)
	}
}
