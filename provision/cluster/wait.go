package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// waitServer waits for the control plane's /readyz and stores the admin
// kubeconfig, encrypted, in the state store.
func (c *run) waitServer(ctx context.Context, st *engine.State) error {
	cfg, err := c.restConfig(ctx, st)
	if err != nil {
		return err
	}
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	last := "no answer"
	err = poll(ctx, c.o.ReadyTimeout, 100*time.Millisecond, func() bool {
		resp, err := hc.Get(cfg.Host + "/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		if ctx.Err() != nil { // stopped, not timed out: the deploy is interrupted
			return fmt.Errorf("waiting for the control plane at %s: %w", cfg.Host, err)
		}
		return fmt.Errorf("control plane at %s not ready after %s: %s; see the control-plane machine's log (k2 status %s)", cfg.Host, c.o.ReadyTimeout, last, st.Env.Name)
	}
	st.ServerURL = cfg.Host
	kc, err := os.ReadFile(KubeconfigPath(c.o.Home, st.Env.Name))
	if err != nil {
		return err
	}
	st.Progress("", 100, "control plane ready at %s", cfg.Host)
	return st.Store.PutSecret(ctx, st.Env.Name, state.SecretKubeconfig, kc)
}

// waitNodes waits until every machine that runs an agent has a Ready node.
func (c *run) waitNodes(ctx context.Context, st *engine.State) error {
	want := 0
	for _, m := range st.Plan.Machines {
		// A k2 OS control plane is a node too (k2 init runs an agent there).
		if m.Role == engine.RoleWorker || m.Index > 0 || usesMachineConfig(st.Plan.Bootstrap) {
			want++
		}
	}
	if want == 0 {
		return nil
	}
	cfg, err := c.restConfig(ctx, st)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var notReady []string
	err = poll(ctx, c.o.ReadyTimeout, 250*time.Millisecond, func() bool {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		ready := 0
		notReady = notReady[:0]
		for _, n := range nodes.Items {
			if nodeReady(&n) {
				ready++
			} else {
				notReady = append(notReady, n.Name)
			}
		}
		return ready >= want
	})
	if err != nil {
		sort.Strings(notReady)
		return fmt.Errorf("waiting for %d Ready nodes: %w (not ready: %s)", want, err, strings.Join(notReady, ", "))
	}
	st.Progress("", 100, "%d nodes ready", want)
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poll calls f every interval until it returns true, ctx ends or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, f func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
