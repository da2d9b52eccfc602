package metal

import (
	"testing"

	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// TestConformance runs the provider kit against fake BMCs: each subtest
// gets its own lab of 4 servers, a fresh claims directory, and a boot
// server on a loopback port (not waited on: no machine really boots here).
func TestConformance(t *testing.T) {
	providertest.Run(t, func() sdk.Provider { return newTestProvider() },
		providertest.WithConfig(func(t *testing.T) sdk.Config {
			l := newLab(t, 4, nil)
			img := t.TempDir()
			writeFile(t, img+"/vmlinuz", "kernel")
			writeFile(t, img+"/initramfs.cpio.gz", "initramfs")
			return l.config(t, map[string]any{"bootAddress": "127.0.0.1:0", "image": img, "bootTimeout": "0s"})
		}))
}
