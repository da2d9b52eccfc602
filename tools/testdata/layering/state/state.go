// Package state stands for k2.dev/k2/state, at the bottom of the graph.
package state

import "k2.dev/k2/provision/engine"

// Engine is not allowed: state imports only internal/.
const Engine = engine.Version
