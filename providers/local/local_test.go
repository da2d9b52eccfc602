package local_test

import (
	"encoding/json"
	"testing"

	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

func stateConfig(t *testing.T) sdk.Config {
	b, _ := json.Marshal(map[string]any{"stateDir": t.TempDir()})
	return b
}

func TestConformance(t *testing.T) {
	providertest.Run(t, local.New, providertest.WithConfig(stateConfig))
}
