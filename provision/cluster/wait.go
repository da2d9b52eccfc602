package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/machine"
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
	last, shown := "no answer", ""
	err = poll(ctx, c.o.ReadyTimeout, 100*time.Millisecond, func() bool {
		ok, why := serverReady(ctx, hc, cfg.Host)
		if ok {
			return true
		}
		if last = why; last != shown {
			shown = last
			st.Progress("", 0, "control plane at %s: %s", cfg.Host, last)
		}
		return false
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
	var want []string
	for _, m := range st.Plan.Machines {
		// Servers are no nodes; a k2 OS control plane is one too (k2 init
		// runs an agent there).
		if m.Role == engine.RoleWorker || usesMachineConfig(st.Plan.Bootstrap) || st.Plan.ForeignOS() {
			want = append(want, m.Name)
		}
	}
	if len(want) == 0 {
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
	why, shown := "no node has registered yet", ""
	waiting := want            // the machines without a Ready node
	var failed []state.Machine // machines the provider reports failed
	var failedLive []machine.Live
	var asked time.Time
	err = poll(ctx, c.o.ReadyTimeout, 250*time.Millisecond, func() bool {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			why = "listing nodes: " + err.Error()
			return false
		}
		ready, notReady := nodesNotReady(want, nodes.Items)
		if ready >= len(want) {
			return true
		}
		waiting = machinesWithoutReadyNode(want, nodes.Items)
		if why = fmt.Sprintf("%d of %d nodes ready — %s", ready, len(want), strings.Join(notReady, "; ")); why != shown {
			shown = why
			st.Progress("", 100*ready/len(want), "%s", why)
		}
		if time.Since(asked) >= machineCheckInterval {
			asked = time.Now()
			failed, failedLive = failedMachines(c.observeMachines(ctx, st, waiting))
			return len(failed) > 0
		}
		return false
	})
	if len(failed) > 0 {
		// A failed machine does not come back by itself: its node will
		// never join, however long the wait.
		var problems []string
		for i, m := range failed {
			problems = append(problems, failedLive[i].Problem(st.Env.Name, m.Name, st.Env.Provider))
		}
		first := failed[0].Name
		return fmt.Errorf("waiting for %s: %s, so its node will not join%s\n  what to do: fix what its log says ('k2 machine console %s %s' shows all of it), then 'k2 machine power %s %s reset' restarts the machine",
			readyNodes(len(want)), strings.Join(problems, "; "), c.machineReport(ctx, st, failed, failedLive), st.Env.Name, first, st.Env.Name, first)
	}
	if err != nil {
		report := ""
		if ctx.Err() == nil {
			ms, live := c.observeMachines(ctx, st, waiting)
			report = c.machineReport(ctx, st, ms, live)
		}
		return fmt.Errorf("waiting for %s: %w: %s%s\n  what to do: read the machines' logs ('k2 machine console %s NAME'; 'k2 status %s' shows the machines)",
			readyNodes(len(want)), err, why, report, st.Env.Name, st.Env.Name)
	}
	st.Progress("", 100, "%d nodes ready", len(want))
	return nil
}

// readyNodes is "1 Ready node" or "n Ready nodes".
func readyNodes(n int) string {
	if n == 1 {
		return "1 Ready node"
	}
	return fmt.Sprintf("%d Ready nodes", n)
}

// serverReady asks the apiserver's /readyz; when it is not ready, why says
// what answered: the connection error, or the status and the checks that
// failed.
func serverReady(ctx context.Context, hc *http.Client, host string) (ok bool, why string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, host+"/readyz?verbose", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, "not answering yet (" + dialWhy(err) + ")"
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return false, readyzWhy(resp.Status, string(body))
}

// readyzWhy is a not-ready /readyz?verbose answer in one line: the status
// and the checks that failed ("[-]etcd failed: reason withheld").
func readyzWhy(status, body string) string {
	var failed []string
	for _, l := range strings.Split(body, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "[-]"); ok {
			failed = append(failed, strings.TrimSuffix(strings.TrimSuffix(name, ": reason withheld"), " failed"))
		}
	}
	switch {
	case len(failed) == 0:
		return "starting (" + status + ")"
	case len(failed) > 3:
		return fmt.Sprintf("starting (%s), waiting for %s and %d more checks", status, strings.Join(failed[:3], ", "), len(failed)-3)
	}
	return "starting (" + status + "), waiting for " + strings.Join(failed, ", ")
}

// dialWhy is why a request got no answer, in words that do not change from
// one try to the next.
func dialWhy(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "no answer in time"
	}
	return err.Error()
}

// nodesNotReady counts the Ready nodes and says, for each machine in want
// (the machines that run an agent) without one, why: its node's Ready
// condition, or that no node of that name has registered (the agent has
// not joined yet). A provider whose node names differ from its machine
// names gets a count of the nodes still missing.
func nodesNotReady(want []string, nodes []corev1.Node) (ready int, why []string) {
	seen := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		seen[n.Name] = true
		c := readyCondition(n)
		switch {
		case c != nil && c.Status == corev1.ConditionTrue:
			ready++
		case c == nil:
			why = append(why, n.Name+": registered, no status yet")
		default:
			w := n.Name + ": NotReady"
			if c.Status == corev1.ConditionUnknown {
				w = n.Name + ": status unknown"
			}
			if c.Reason != "" {
				w += ": " + c.Reason
			}
			if c.Message != "" {
				w += ": " + c.Message
			}
			why = append(why, w)
		}
	}
	var missing []string
	for _, m := range want {
		if !seen[m] {
			missing = append(missing, m)
		}
	}
	switch named := len(want) - len(missing); {
	case len(missing) == 0:
	case len(nodes) == named: // node names are machine names
		for _, m := range missing {
			why = append(why, m+": no node yet (its agent has not joined)")
		}
	case len(nodes) < len(want):
		why = append(why, fmt.Sprintf("%d machines have no node yet (their agents have not joined)", len(want)-len(nodes)))
	}
	sort.Strings(why)
	return ready, why
}

// machinesWithoutReadyNode are the machines of want whose node is not
// Ready or has not registered (all of want when node names are not
// machine names and fewer nodes than machines are Ready).
func machinesWithoutReadyNode(want []string, nodes []corev1.Node) []string {
	ready := map[string]bool{}
	for i := range nodes {
		if nodeReady(&nodes[i]) {
			ready[nodes[i].Name] = true
		}
	}
	var out []string
	for _, m := range want {
		if !ready[m] {
			out = append(out, m)
		}
	}
	return out
}

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	c := readyCondition(n)
	return c != nil && c.Status == corev1.ConditionTrue
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
