// Package agenttest starts a real k2 control plane (provision/controlplane)
// in the test process, with its join endpoint and a join token, as `k2
// server` and `k2 token create` provide them, for tests of agents and of providers that start agents.
// Only one control plane can run per process: Start returns the same
// Cluster to every caller.
package agenttest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"k2.dev/k2/internal/freeport"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/controlplane"
)

// Cluster is a running control plane and its join endpoint.
type Cluster struct {
	Server  *controlplane.Server
	Kube    kubernetes.Interface
	JoinURL string
	Token   join.Token
	Dir     string
}

var (
	once    sync.Once
	shared  *Cluster
	started error
)

// Start starts the shared cluster on first use. Remove Dir at the end of
// TestMain if you like; the control plane stops with the process.
func Start() (*Cluster, error) {
	once.Do(func() { shared, started = start() })
	return shared, started
}

func start() (*Cluster, error) {
	dir, err := os.MkdirTemp("", "k2-agenttest")
	if err != nil {
		return nil, err
	}
	port, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	joinPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	srv, err := controlplane.Start(context.Background(), controlplane.Config{
		DataDir: dir, BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1", Port: port, JoinPort: joinPort,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	fmt.Fprintf(os.Stderr, "agenttest: control plane ready at %s in %s\n", srv.URL, time.Since(t0).Round(time.Millisecond))
	tok, _, err := controlplane.CreateToken(dir, 0, "agenttest")
	if err != nil {
		return nil, err
	}
	return &Cluster{
		Server: srv, Kube: kubernetes.NewForConfigOrDie(srv.RESTConfig()),
		JoinURL: fmt.Sprintf("https://127.0.0.1:%d", joinPort), Token: tok, Dir: dir,
	}, nil
}

// NodeReady reports whether a node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
