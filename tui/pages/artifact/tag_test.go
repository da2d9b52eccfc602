package artifact

import "testing"

func TestTag(t *testing.T) {
	for dir, want := range map[string]string{
		"/src/examples/hello": "hello:latest",
		"/src/My Shop!":       "my-shop:latest",
		"/src/.hidden":        "hidden:latest",
		"/":                   "cluster:latest",
	} {
		if got := Tag(dir); got != want {
			t.Errorf("Tag(%q) = %q, want %q", dir, got, want)
		}
	}
}
