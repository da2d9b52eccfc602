package sdk

import (
	"os"
	"path/filepath"
)

// Home is k2's home directory as a plugin sees it: $K2_HOME (k2 passes
// its own to the plugins it starts), else ~/.k2. Providers keep their
// state under it by default ("$K2_HOME/<provider>").
func Home() string {
	if h := os.Getenv("K2_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".k2")
	}
	return ".k2"
}
