package netboot_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"

	"k2.dev/k2/internal/netboot"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBootFlow walks one machine through what iPXE and k2 init fetch —
// iPXE over TFTP, the generic and per-MAC scripts, kernel, initramfs, the
// config once — and checks the stages, bytes and the single-use config.
func TestBootFlow(t *testing.T) {
	dir := t.TempDir()
	ipxe := bytes.Repeat([]byte("iPXE"), 10000) // several TFTP blocks
	kernel, initrd := bytes.Repeat([]byte("K"), 300000), bytes.Repeat([]byte("I"), 700000)
	for name, b := range map[string][]byte{"undionly.kpxe": ipxe, "vmlinuz": kernel, "initramfs.cpio.gz": initrd} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := netboot.Start(ctx, netboot.Options{HTTPAddr: "127.0.0.1:0", TFTPAddr: "127.0.0.1:0", IPXEDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:aa:bb:01"
	config := []byte("apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: worker\n")
	if err := srv.Add(netboot.Machine{Name: "w0", MAC: mac, Kernel: filepath.Join(dir, "vmlinuz"), Initramfs: filepath.Join(dir, "initramfs.cpio.gz"),
		Cmdline: "console=ttyS0", Config: config}); err != nil {
		t.Fatal(err)
	}

	// 1. TFTP: iPXE, with a client nobody here wrote (pin/tftp's).
	c, err := tftp.NewClient(srv.TFTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	wt, err := c.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), ipxe) {
		t.Fatalf("TFTP served %d bytes, want the %d of undionly.kpxe", got.Len(), len(ipxe))
	}
	// The chained iPXE asking again (its DHCP gave it the same filename)
	// gets a script, not itself.
	wt, err = c.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatal(err)
	}
	got.Reset()
	if _, err := wt.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	if want := "#!ipxe\nchain " + srv.URL() + "/boot.ipxe\n"; got.String() != want {
		t.Errorf("second TFTP request: %q, want %q", got.String(), want)
	}
	if _, err := c.Receive("../etc/passwd", "octet"); err == nil {
		t.Error("TFTP served a file outside the iPXE set")
	}

	// 2. iPXE's first script chains to the MAC's.
	_, s := get(t, srv.URL()+"/boot.ipxe")
	if want := "#!ipxe\nchain " + srv.URL() + "/m/${mac:hexhyp}/boot.ipxe\n"; s != want {
		t.Errorf("boot.ipxe:\n%s\nwant:\n%s", s, want)
	}
	code, script := get(t, srv.URL()+"/m/52-54-00-aa-bb-01/boot.ipxe")
	if code != 200 {
		t.Fatalf("per-MAC script: %d %s", code, script)
	}
	lines := strings.Split(script, "\n")
	base := srv.URL() + "/m/52-54-00-aa-bb-01"
	if !strings.HasPrefix(lines[2], "kernel "+base+"/kernel initrd=initrd console=ttyS0 k2.config="+srv.URL()+"/c/") ||
		lines[3] != "initrd --name initrd "+base+"/initrd" || lines[4] != "boot" {
		t.Fatalf("script:\n%s", script)
	}
	cfgURL := lines[2][strings.Index(lines[2], "k2.config=")+len("k2.config="):]
	if tok := cfgURL[strings.LastIndex(cfgURL, "/")+1:]; len(tok) < 32 {
		t.Errorf("config token %q is guessable", tok)
	}
	if code, _ := get(t, srv.URL()+"/m/52-54-00-aa-bb-99/boot.ipxe"); code != 404 {
		t.Errorf("script of an unknown MAC: %d, want 404", code)
	}

	// 3. Kernel and initramfs.
	if _, k := get(t, base+"/kernel"); len(k) != len(kernel) {
		t.Errorf("kernel: %d bytes", len(k))
	}
	if _, i := get(t, base+"/initrd"); len(i) != len(initrd) {
		t.Errorf("initrd: %d bytes", len(i))
	}

	// 4. The config, once.
	if code, b := get(t, cfgURL); code != 200 || b != string(config) {
		t.Fatalf("config: %d %q", code, b)
	}
	if code, b := get(t, cfgURL); code != http.StatusGone || strings.Contains(b, "MachineConfig") {
		t.Errorf("second config fetch: %d %q, want 410 and nothing", code, b)
	}

	// A TFTP transfer is recorded when the server has its last ACK, which
	// may come after the client moved on.
	p := waitProgress(t, srv, mac, func(p netboot.Progress) bool { _, ok := p.Stages[netboot.StageTFTP]; return ok })
	var stages []string
	for _, st := range []string{netboot.StageTFTP, netboot.StageScript, netboot.StageKernel, netboot.StageInitramfs, netboot.StageConfig} {
		if _, ok := p.Stages[st]; ok {
			stages = append(stages, st)
		}
	}
	if diff := cmp.Diff([]string{"tftp", "script", "kernel", "initramfs", "config"}, stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
	if p.Stage != netboot.StageConfig {
		t.Errorf("last stage %q", p.Stage)
	}
	wantBytes := int64(len(ipxe) + len(kernel) + len(initrd) + len(config))
	// + the chain script over TFTP and the two HTTP scripts
	if p.Bytes < wantBytes || p.Bytes > wantBytes+1000 { // + the two scripts
		t.Errorf("bytes served %d, want %d + the scripts", p.Bytes, wantBytes)
	}
	if diff := cmp.Diff([]string{"127.0.0.1"}, p.Addresses); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	for _, l := range srv.Summary() {
		t.Log(l)
	}
}

// TestRestartOnSameAddresses: a closed server frees its HTTP and TFTP
// addresses at once, so the next Create's boot server can listen there
// (the metal provider starts one per Create: control plane, then workers).
func TestRestartOnSameAddresses(t *testing.T) {
	first, err := netboot.Start(context.Background(), netboot.Options{HTTPAddr: "127.0.0.1:0", TFTPAddr: "127.0.0.1:0", IPXEDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	opts := netboot.Options{HTTPAddr: first.URL()[len("http://"):], TFTPAddr: first.TFTPAddr().String(), IPXEDir: t.TempDir()}
	first.Close()
	second, err := netboot.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("a boot server on the addresses of a closed one: %v", err)
	}
	second.Close()
}

// waitProgress returns mac's progress once done(progress) holds, or after
// 10 s whatever it is then. A request is recorded after its answer has
// left (with the bytes sent and the time taken), so a client holding the
// answer may ask a moment before the server has recorded it.
func waitProgress(t *testing.T, srv *netboot.Server, mac string, done func(netboot.Progress) bool) netboot.Progress {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p, ok := srv.Progress(mac)
		if !ok {
			t.Fatalf("no progress for %s: not a machine of this server", mac)
		}
		if done(p) || time.Now().After(deadline) {
			return p
		}
	}
}
