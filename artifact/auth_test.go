package artifact_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net"
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

// authRegistry wraps the in-process registry with an auth scheme:
// "basic" checks HTTP basic auth; "bearer" answers 401 with a Bearer
// challenge and serves a token endpoint at /token that wants basic auth.
// It does not model scopes, token expiry or refresh tokens.
func authRegistry(scheme, user, pass string) http.Handler {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	const token = "t0k3n"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case scheme == "bearer" && r.URL.Path == "/token":
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"token":"`+token+`","access_token":"`+token+`"}`)
			return
		case scheme == "bearer":
			if r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		default:
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		reg.ServeHTTP(w, r)
	})
}

// dockerConfig writes a docker config.json with credentials for host.
func dockerConfig(t *testing.T, host, user, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	auths := "{}"
	if user != "" {
		auths = `{"` + host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}}`
	}
	if err := os.WriteFile(p, []byte(`{"auths":`+auths+`}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRegistryAuth pushes and pulls with the credentials of a docker
// config.json, against basic and bearer-token auth, and fails with a
// registry error (exit 5) and a login hint without them.
func TestRegistryAuth(t *testing.T) {
	for _, scheme := range []string{"basic", "bearer"} {
		t.Run(scheme, func(t *testing.T) {
			srv := httptest.NewServer(authRegistry(scheme, "k2user", "s3cret"))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			ref := host + "/private/hello:v1"
			s := newStore(t)
			mustBuild(t, s, helloDir(t), ref, nil)

			_, _, err := artifact.Push(context.Background(), s, ref, artifact.RemoteOptions{DockerConfig: dockerConfig(t, host, "", "")})
			var ue *usererr.Error
			if !errors.As(err, &ue) || ue.Kind != usererr.KindRegistry || !strings.Contains(err.Error(), "docker login") {
				t.Fatalf("push without credentials: %v", err)
			}
			cfg := dockerConfig(t, host, "k2user", "s3cret")
			if _, _, err := artifact.Push(context.Background(), s, ref, artifact.RemoteOptions{DockerConfig: cfg}); err != nil {
				t.Fatalf("push with credentials: %v", err)
			}
			if _, err := artifact.Pull(context.Background(), newStore(t), ref, artifact.RemoteOptions{DockerConfig: cfg}); err != nil {
				t.Fatalf("pull with credentials: %v", err)
			}
		})
	}
}

// TestRegistryTLS pushes over HTTPS to a registry that is not on a loopback
// name: "registry.test" is dialled to a local TLS server whose certificate
// the client trusts. Without trust, the push fails with a registry error.
func TestRegistryTLS(t *testing.T) {
	srv := httptest.NewTLSServer(authRegistry("basic", "u", "p"))
	defer srv.Close()
	const host = "registry.test"
	dialer := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	trusted := srv.Client().Transport.(*http.Transport).Clone()
	trusted.DialContext = dialer
	trusted.TLSClientConfig.ServerName = "example.com" // a name in httptest's certificate
	untrusted := &http.Transport{DialContext: dialer, TLSClientConfig: &tls.Config{ServerName: "example.com"}}

	ref := host + "/secure/hello:v1"
	s := newStore(t)
	mustBuild(t, s, helloDir(t), ref, nil)
	cfg := dockerConfig(t, host, "u", "p")

	_, _, err := artifact.Push(context.Background(), s, ref, artifact.RemoteOptions{DockerConfig: cfg, Client: &http.Client{Transport: untrusted}})
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != usererr.KindRegistry {
		t.Fatalf("push to an untrusted certificate: %v", err)
	}
	opts := artifact.RemoteOptions{DockerConfig: cfg, Client: &http.Client{Transport: trusted}}
	pinned, _, err := artifact.Push(context.Background(), s, ref, opts)
	if err != nil {
		t.Fatalf("push over TLS: %v", err)
	}
	if _, err := artifact.Pull(context.Background(), newStore(t), pinned, opts); err != nil {
		t.Fatalf("pull over TLS: %v", err)
	}
}
