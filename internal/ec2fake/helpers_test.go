package ec2fake_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func post(t *testing.T, endpoint string, v url.Values) string {
	t.Helper()
	resp, err := http.PostForm(endpoint, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", v.Get("Action"), resp.StatusCode, b)
	}
	return string(b)
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}

// debianAMI reads the seeded Debian AMI through SSM's JSON protocol.
func debianAMI(t *testing.T, endpoint string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(`{"Name":"/aws/service/debian/release/12/latest/amd64"}`))
	req.Header.Set("X-Amz-Target", "AmazonSSM.GetParameter")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Parameter struct{ Value string } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Parameter.Value
}
