package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/internal/join"
)

// runSim runs a node of a runtime from Runtimes (sim) as components of a
// component.Manager, started in this order and stopped in reverse:
//
//	kubelet-api   the kubelet endpoint the apiserver calls (kubectl logs)
//	node          registers the Node and makes the runtime; ready then
//	heartbeat     renews the node's Lease and Ready condition
//	pods          runs the pods bound to the node through the runtime
//
// It returns when ctx ends (after stopping them) or a component fails
// (its *component.Error).
func runSim(ctx context.Context, o Options, creds *join.Credentials, log *slog.Logger) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", creds.Kubeconfig, err)
	}
	cfg.UserAgent = "k2-agent/" + o.NodeName
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	api := &kubeletAPI{}
	a := &agent{o: o, cs: cs, log: log}
	m := component.NewManager(log,
		api,
		&simNode{a: a, api: api},
		component.Func("heartbeat", a.heartbeat),
		component.Func("pods", a.runPods),
	)
	if err := m.Start(ctx); err != nil {
		return err
	}
	failed := m.Wait(ctx)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return errors.Join(failed, m.Stop(sctx))
}

// simNode registers the Node (with the kubelet API's port) and makes its
// runtime; Options.Ready is closed once it is done.
type simNode struct {
	a   *agent
	api *kubeletAPI
}

func (n *simNode) Name() string               { return "node" }
func (n *simNode) Init(context.Context) error { return nil }
func (n *simNode) Stop(context.Context) error { return nil }

// Start registers the Node, makes the runtime and reports the node ready.
func (n *simNode) Start(ctx context.Context) error {
	a := n.a
	a.kubeletPort = n.api.Port()
	node, err := a.register(ctx)
	if err != nil {
		return fmt.Errorf("registering node %s: %w", a.o.NodeName, err)
	}
	rt, err := Runtimes[a.o.RuntimeName](node)
	if err != nil {
		return fmt.Errorf("starting the runtime: %w", err)
	}
	a.rt, a.podCIDR = rt, node.Spec.PodCIDR
	n.api.rt.Store(rt)
	a.log.Info("node ready", "runtime", rt.Name(), "podCIDR", node.Spec.PodCIDR)
	if a.o.Ready != nil {
		close(a.o.Ready)
	}
	return nil
}
