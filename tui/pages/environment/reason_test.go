package environment

import (
	"errors"
	"testing"

	"k2.dev/k2/internal/usererr"
)

func TestReasonNamesPoolsOnce(t *testing.T) {
	err := usererr.Wrap(usererr.KindProvider, errors.New(
		"pool control-plane: size: no class has 40Gi memory\npool worker: size: no class has 40Gi memory\nprovider x: bootstrap: offers none"),
		"pick another provider")
	want := "pools control-plane, worker: size: no class has 40Gi memory; provider x: bootstrap: offers none"
	if got := reason(err); got != want {
		t.Errorf("reason = %q\nwant     %q", got, want)
	}
}
