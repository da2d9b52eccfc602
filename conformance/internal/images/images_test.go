package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoList(t *testing.T) {
	got := RepoList("127.0.0.1:5000", "127.0.0.1:9")
	for _, want := range []string{
		"promoterE2eRegistry: 127.0.0.1:5000/e2e-test-images\n",
		"gcRegistry: 127.0.0.1:5000\n",
		"invalidRegistry: 127.0.0.1:9/invalid\n",
		"privateRegistry: 127.0.0.1:9/private\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("repo list lacks %q:\n%s", want, got)
		}
	}
	// Every key the suite knows points at loopback.
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if _, v, _ := strings.Cut(l, ": "); !strings.HasPrefix(v, "127.0.0.1:") {
			t.Errorf("%q leaves loopback", l)
		}
	}
}

// TestAgnhostFS builds agnhost's file system (with a stand-in agnhost
// executable): the Debian tools are the programs their names find on PATH,
// not busybox applets, and what the suite reads from upstream's image is
// there.
func TestAgnhostFS(t *testing.T) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/curl", "/bin/nc.openbsd", "/usr/bin/dig", "/usr/sbin/ip", "/usr/bin/socat", "/usr/bin/bash", "/usr/bin/getent"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (.ci/run installs it)", p)
		}
	}
	src, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "agnhost"), []byte("stand-in"), 0o755)
	fs, err := agnhostFS(Inputs{Bin: bin, K8sSrc: strings.TrimSpace(string(src)), Busybox: "/bin/busybox"})
	if err != nil {
		t.Fatal(err)
	}
	got := entries(t, fs)
	for _, tool := range []string{"nc", "curl", "dig", "ip", "ss", "socat", "bash", "getent", "sh", "ls"} {
		var first string
		for _, d := range strings.Split(defaultPath, ":") {
			if e, ok := got[strings.TrimPrefix(d, "/")+"/"+tool]; ok {
				first = e
				break
			}
		}
		wantLink := tool == "sh" || tool == "ls"
		if isLink := strings.Contains(first, " -> "); first == "" || isLink != wantLink {
			t.Errorf("%s on PATH: %q (want a busybox link: %v)", tool, first, wantLink)
		}
	}
	for name, want := range map[string]string{
		"etc/os-release": "Alpine Linux",
		"etc/group":      "group-defined-in-image:x:50000:user-defined-in-image",
		"localhost.crt":  "BEGIN CERTIFICATE",
		"agnhost-2":      "-> agnhost",
	} {
		if !strings.Contains(got[name], want) {
			t.Errorf("%s: %q, want it to contain %q", name, got[name], want)
		}
	}
	var libc bool
	for name := range got {
		libc = libc || strings.HasSuffix(name, "/libc.so.6")
	}
	if !libc {
		t.Error("no libc.so.6: the Debian tools cannot run")
	}
}
