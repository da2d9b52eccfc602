package imagetest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote"

	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/registrytest"
)

// TestHTTPServerImage builds the image, pushes it, pulls it back, then runs
// its executable on the host: it answers, logs the request and stops on
// SIGTERM.
func TestHTTPServerImage(t *testing.T) {
	start := time.Now()
	img := imagetest.HTTPServerImage(t)
	built := time.Since(start)
	d, _ := img.Digest()
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	size, _ := layers[0].Size()
	t.Logf("image %s built in %s, layer %d B (compressed)", d, built.Round(time.Millisecond), size)

	host := registrytest.New(t)
	pinned := imagetest.Push(t, img, host+"/test/httpserver:1")
	if want := host + "/test/httpserver@" + d.String(); pinned != want {
		t.Errorf("Push = %s, want %s", pinned, want)
	}
	repo, err := remote.NewRepository(host + "/test/httpserver")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	got, err := repo.Resolve(context.Background(), "1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest.String() != d.String() {
		t.Errorf("registry has %s, pushed %s", got.Digest, d)
	}

	// Run the binary from the layer.
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "httpserver")
	if err := extractOne(rc, "httpserver", exe); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{fmt.Sprintf("PORT=%d", port)}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	hostname, _ := os.Hostname()
	var body string
	for i := 0; i < 50; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := "hello from " + hostname + "\n"; body != want {
		t.Errorf("GET / = %q, want %q", body, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	all := strings.Join(out, "\n")
	if !strings.Contains(all, "GET / from 127.0.0.1:") || !strings.Contains(all, "stopped") {
		t.Errorf("stdout:\n%s", all)
	}
}
