package main

import (
	"encoding/json"
	"testing"

	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

func stateConfig(t *testing.T) sdk.Config {
	b, _ := json.Marshal(map[string]any{"stateDir": t.TempDir()})
	return b
}

// TestConformance runs the kit in-process over go-plugin's gRPC test mode.
func TestConformance(t *testing.T) {
	providertest.Run(t, func() sdk.Provider { return &provider{} }, providertest.WithConfig(stateConfig))
}
