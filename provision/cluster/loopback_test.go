package cluster

import (
	"slices"
	"testing"
)

func TestLoopbackRegistries(t *testing.T) {
	got := loopbackRegistries([]string{
		"127.0.0.1:5000/web:v1", "localhost:5000/other:v2", // the same address twice
		"127.0.0.1:41234/a/b@sha256:abc",
		"library/nginx:1.27", "10.0.0.5:5000/x:1", "nginx",
	})
	want := []string{"127.0.0.1:5000", "127.0.0.1:41234"}
	if !slices.Equal(got, want) {
		t.Fatalf("loopbackRegistries = %v, want %v", got, want)
	}
}
