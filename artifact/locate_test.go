package artifact_test

import (
	"strings"
	"testing"

	"k2.dev/k2/artifact"
)

func TestPinnedRef(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	for in, want := range map[string]string{
		"reg.example:5000/team/app:v1": "reg.example:5000/team/app@" + d("1"),
		"reg.example:5000/team/app":    "reg.example:5000/team/app@" + d("1"),
		"app:v1":                       "app@" + d("1"),
		"reg.example/app@" + d("0"):    "reg.example/app@" + d("1"),
		"reg.example/app:v1@" + d("0"): "reg.example/app:v1@" + d("1"),
	} {
		if got := artifact.PinnedRef(in, d("1")); got != want {
			t.Errorf("PinnedRef(%s) = %s, want %s", in, got, want)
		}
	}
}
