package artifact_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
)

// TestPushWithDockerCredentials runs the in-process registry behind HTTP
// basic auth and pushes with the credentials of a docker config.json.
// (Bearer tokens go through the same oras-go auth client; not modelled here.)
func TestPushWithDockerCredentials(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "k2user" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/private/hello:v1"

	s := newStore(t)
	mustBuild(t, s, helloDir(t), ref, nil)

	empty := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(empty, []byte(`{"auths":{}}`), 0o600)
	_, _, err := artifact.Push(context.Background(), s, ref, artifact.RemoteOptions{DockerConfig: empty})
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != usererr.KindRegistry || !strings.Contains(err.Error(), "docker login") {
		t.Fatalf("push without credentials: %v", err)
	}

	cfg := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte("k2user:s3cret"))
	os.WriteFile(cfg, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600)
	if _, _, err := artifact.Push(context.Background(), s, ref, artifact.RemoteOptions{DockerConfig: cfg}); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	if _, err := artifact.Pull(context.Background(), newStore(t), ref, artifact.RemoteOptions{DockerConfig: cfg}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
}
