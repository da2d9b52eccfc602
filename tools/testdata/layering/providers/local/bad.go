package local

// The layering violation the lint must catch: a provider importing the
// deploy engine.
import "k2.dev/k2/provision/engine"

// Engine is not allowed: provision/engine.
const Engine = engine.Version
