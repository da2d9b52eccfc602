package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// Destroy deletes every machine of env through its provider, forgets them,
// removes the cluster's identity and secrets and records a destroy in the
// history. The environment itself stays, ready for another deploy.
func Destroy(ctx context.Context, s *state.Store, home, env string, prov engine.Provider, cfg sdk.Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lock, err := s.Lock(ctx, env, "k2 destroy "+env)
	if err != nil {
		return engine.UserError(err)
	}
	defer lock.Release(context.WithoutCancel(ctx))
	dep, err := s.BeginDeployment(ctx, state.Deployment{Env: env, Op: state.OpDestroy})
	if err != nil {
		return err
	}
	ms, err := s.ListMachines(ctx, env)
	if err != nil {
		return err
	}
	// Workers first, so no agent is left calling a stopped control plane.
	sort.SliceStable(ms, func(i, j int) bool {
		return ms[i].Role != engine.RoleControlPlane && ms[j].Role == engine.RoleControlPlane
	})
	var errs []error
	for _, m := range ms {
		ids := []string{}
		if m.ProviderID != "" {
			ids = append(ids, m.ProviderID)
		} else if l, err := prov.List(ctx, &sdk.ListRequest{Config: cfg, RequestID: m.RequestID}); err == nil {
			for _, pm := range l.Machines {
				ids = append(ids, pm.ID)
			}
		}
		// Delete even with no machine: the provider may have made other
		// things for the request (a security group) before a crash.
		if len(ids) > 0 {
			log.Info("deleting machine", "machine", m.Name, "id", ids[0])
		}
		resp, err := prov.Delete(ctx, &sdk.DeleteRequest{RequestID: m.RequestID, Config: cfg, MachineIDs: ids})
		if err == nil && resp.Diagnostics.HasErrors() {
			err = resp.Diagnostics.Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting machine %s: %w", m.Name, err))
			continue
		}
		if err := s.DeleteMachine(ctx, env, m.Name); err != nil && !errors.Is(err, state.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.FinishDeployment(context.WithoutCancel(ctx), dep.ID, state.Failed, err.Error())
		return err
	}
	for _, name := range []string{state.SecretKubeconfig, state.SecretJoinToken, SecretLayers} {
		if err := s.DeleteSecret(ctx, env, name); err != nil && !errors.Is(err, state.ErrNotFound) {
			return err
		}
	}
	if err := os.RemoveAll(Dir(home, env)); err != nil {
		return err
	}
	return s.FinishDeployment(ctx, dep.ID, state.Succeeded, "")
}

// Status is what `k2 status` reports about an environment.
type Status struct {
	Env  *state.Environment `json:"env"`
	Last *state.Deployment  `json:"lastDeployment,omitempty"`
	// Machines are k2's records of the environment's machines, each with
	// what the provider reports of it now when it was asked (WithProvider).
	Machines []MachineStatus `json:"machines"`
	// ProviderWarning says why the provider's view is missing when it was
	// to be asked but could not be (not started, unreachable, refused).
	ProviderWarning string `json:"providerWarning,omitempty"`
	// Servers are the control plane's servers, each with its datastore
	// role and health as it reports them.
	Servers  []ServerStatus    `json:"servers,omitempty"`
	Nodes    []NodeStatus      `json:"nodes"`
	Layers   map[string]string `json:"layers,omitempty"` // name → digest of the last deploy
	Apps     []AppStatus       `json:"apps"`
	Healthy  bool              `json:"healthy"`
	Problems []string          `json:"problems,omitempty"`
	// Failure is where the last deployment stopped, when it failed or was
	// interrupted: the step, the reason and the ways on.
	Failure *Failure `json:"failure,omitempty"`
}

// Failure is where a deployment that did not finish stopped.
type Failure struct {
	Step string `json:"step"`
	// Item is the machine or layer of the step that failed ("layer/web").
	Item   string `json:"item,omitempty"`
	Reason string `json:"reason"`
	// Next are the commands that go on from here: resume, or destroy.
	Next []string `json:"next"`
}

// lastFailure reads where deployment d stopped from its journal: the failed
// item, else the failed step, else (killed) the last step started.
func lastFailure(ctx context.Context, s *state.Store, d *state.Deployment) *Failure {
	recs, err := s.Journal(ctx, d.ID)
	if err != nil {
		return nil
	}
	var pick *state.StepRecord
	for i := range recs {
		r := &recs[i]
		switch {
		case r.State == state.StepFailed && (pick == nil || pick.State != state.StepFailed || r.Key != ""):
			pick = r
		case r.State == state.StepStarted && (pick == nil || pick.State == state.StepStarted):
			pick = r
		}
	}
	f := &Failure{Reason: d.Error, Next: []string{"k2 resume " + d.Env, "k2 destroy " + d.Env}}
	if pick != nil {
		f.Step, f.Item = pick.Step, pick.Key
		if pick.Error != "" {
			f.Reason = pick.Error
		}
	}
	if f.Reason == "" {
		f.Reason = string(d.Result)
	}
	return f
}

// NodeStatus is one Node of the cluster.
type NodeStatus struct {
	Name    string `json:"name"`
	Ready   bool   `json:"ready"`
	Runtime string `json:"runtime,omitempty"`
	// RuntimeReason says why the node simulates pods when real ones were
	// wanted (the agent's k2.dev/runtime-reason annotation).
	RuntimeReason string `json:"runtimeReason,omitempty"`
	Pool          string `json:"pool,omitempty"`
	// ReadySince is when its Ready condition last changed (to true, when
	// Ready).
	ReadySince time.Time `json:"readySince,omitzero"`
}

// AppStatus is one App of the cluster.
type AppStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Ready     bool   `json:"ready"`
	Replicas  string `json:"replicas,omitempty"`
	URL       string `json:"url,omitempty"`
	// ReadySince is when its Ready condition last changed.
	ReadySince time.Time `json:"readySince,omitzero"`
}

// GetStatus gathers env's state: records from the store and, when the
// cluster answers, its nodes and Apps; with WithProvider, also what the
// provider reports of each machine.
func GetStatus(ctx context.Context, s *state.Store, home, env string, opts ...StatusOption) (*Status, error) {
	st, err := getStatus(ctx, s, home, env)
	if err != nil {
		return nil, err
	}
	var o statusOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.open != nil {
		st.observe(ctx, o.open)
	}
	return st, nil
}

func getStatus(ctx context.Context, s *state.Store, home, env string) (*Status, error) {
	e, err := s.GetEnv(ctx, env)
	if err != nil {
		return nil, engine.UserError(err)
	}
	st := &Status{Env: e, Nodes: []NodeStatus{}, Apps: []AppStatus{}}
	if d, err := s.LatestDeployment(ctx, env); err == nil {
		st.Last = d
	}
	ms, err := s.ListMachines(ctx, env)
	if err != nil {
		return nil, err
	}
	st.Machines = make([]MachineStatus, len(ms))
	for i, m := range ms {
		st.Machines[i] = MachineStatus{Machine: m}
	}
	st.Layers, _ = PreviousLayers(ctx, s, env)
	if st.Last == nil || st.Last.Op == state.OpDestroy {
		st.Problems = append(st.Problems, "not deployed")
		return st, nil
	}
	switch st.Last.Result {
	case state.Succeeded:
	case state.Failed, state.Interrupted:
		st.Failure = lastFailure(ctx, s, st.Last)
		where := st.Failure.Step
		if st.Failure.Item != "" {
			where += " (" + st.Failure.Item + ")"
		}
		st.Problems = append(st.Problems, fmt.Sprintf("last %s %s at %s", st.Last.Op, st.Last.Result, where))
	default:
		st.Problems = append(st.Problems, fmt.Sprintf("last %s %s: %s", st.Last.Op, st.Last.Result, st.Last.Error))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(home, env))
	if err != nil {
		st.Problems = append(st.Problems, "no kubeconfig: "+err.Error())
		return st, nil
	}
	var live string
	st.Servers, live = serverStatuses(ctx, s, home, env)
	for _, ss := range st.Servers {
		if !ss.Healthy {
			st.Problems = append(st.Problems, fmt.Sprintf("server %s unhealthy: %s", ss.Name, ss.Error))
		}
	}
	if live != "" {
		cfg.Host = live // ask a server that answers
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		st.Problems = append(st.Problems, "control plane unreachable: "+err.Error())
		return st, nil
	}
	for _, n := range nodes.Items {
		ns := NodeStatus{Name: n.Name, Ready: nodeReady(&n), Runtime: n.Labels["k2.dev/runtime"], Pool: n.Labels["k2.dev/pool"],
			RuntimeReason: n.Annotations["k2.dev/runtime-reason"]}
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" {
				ns.ReadySince = c.LastTransitionTime.Time
			}
		}
		if !ns.Ready {
			st.Problems = append(st.Problems, "node "+n.Name+" not ready")
		}
		st.Nodes = append(st.Nodes, ns)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	apps, err := dc.Resource(schema.GroupVersionResource{Group: "k2.dev", Version: "v1", Resource: "apps"}).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, a := range apps.Items {
			as := appStatus(&a)
			if !as.Ready {
				st.Problems = append(st.Problems, "app "+a.GetNamespace()+"/"+a.GetName()+" not ready")
			}
			st.Apps = append(st.Apps, as)
		}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	st.Healthy = len(st.Problems) == 0
	return st, nil
}

func appStatus(a *unstructured.Unstructured) AppStatus {
	as := AppStatus{Namespace: a.GetNamespace(), Name: a.GetName()}
	conds, _, _ := unstructured.NestedSlice(a.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		as.Ready = m["status"] == "True"
		if t, err := time.Parse(time.RFC3339, fmt.Sprint(m["lastTransitionTime"])); err == nil {
			as.ReadySince = t
		}
	}
	as.Replicas, _, _ = unstructured.NestedString(a.Object, "status", "replicas")
	as.URL, _, _ = unstructured.NestedString(a.Object, "status", "url")
	return as
}
