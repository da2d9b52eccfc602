// Moving a cluster to another environment (k2 migrate): a backup taken
// through a server of the old environment, the old identity given to the
// new one, the first new server started from the backup, the old nodes
// forgotten so the workloads come back on the new ones.

package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// BackupEnv writes a backup of env's cluster (k2 backup's format: the
// datastore, the PKI and the join tokens) to w, taken by the first of its
// servers that answers; it returns that server's name.
func BackupEnv(ctx context.Context, s *state.Store, home, env string, w io.Writer) (string, error) {
	servers, err := ServerList(ctx, s, home, env)
	if err != nil {
		return "", err
	}
	ac, err := AdminClient(home, env)
	if err != nil {
		return "", err
	}
	var errs []string
	for _, sv := range servers {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := ac.Info(rctx, sv.JoinURL)
		cancel()
		if err != nil {
			errs = append(errs, sv.Name+": "+err.Error())
			continue
		}
		if err := ac.Backup(ctx, sv.JoinURL, w); err != nil {
			return "", err
		}
		return sv.Name, nil
	}
	return "", usererr.New(usererr.KindFailure, "no server of %s answers for a backup: %s", env, strings.Join(errs, "; "))
}

// CopyIdentity gives environment to the cluster identity of environment
// from — its CAs and service-account keys — so the objects restored from
// from's backup (service account tokens, certificates signed by its CA)
// stay valid in to's cluster. to must have no cluster yet.
func CopyIdentity(home, from, to string) error {
	src, dst := filepath.Join(Dir(home, from), "pki"), filepath.Join(Dir(home, to), "pki")
	if _, err := os.Stat(filepath.Join(Dir(home, to), "cluster.json")); err == nil {
		return usererr.New(usererr.KindFailure, "environment %s already has a cluster; destroy it first ('k2 destroy %s') or migrate to another environment", to, to)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("reading the identity of %s: %w", from, err)
	}
	os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// forgetOldNodes runs after a restore: the restored datastore still has the
// old environment's Nodes, whose agents are gone. It deletes them and the
// pods bound to them at once (rather than after the node controller's
// eviction timeout), so their controllers make the pods again on the new
// environment's nodes.
func (c *run) forgetOldNodes(ctx context.Context, st *engine.State) error {
	if c.o.Restore == "" {
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
	var mine []string
	for _, m := range st.Plan.Machines {
		mine = append(mine, m.Name)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing the restored nodes: %w", err)
	}
	zero := int64(0)
	for _, n := range nodes.Items {
		if slices.Contains(mine, n.Name) {
			continue
		}
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !isNotFound(err) {
				return fmt.Errorf("deleting pod %s/%s of the old node %s: %w", p.Namespace, p.Name, n.Name, err)
			}
		}
		if err := cs.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting the old node %s: %w", n.Name, err)
		}
		st.Progress("", 100, "forgot the old node %s and its %d pods", n.Name, len(pods.Items))
	}
	return nil
}

// WaitWorkloads waits until env's workloads run again: every App Ready and
// every Deployment and StatefulSet with all its replicas available.
func WaitWorkloads(ctx context.Context, home, env string, timeout time.Duration, progress func(string)) error {
	cfg, err := adminRESTConfig(home, env)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var waiting []string
	err = poll(ctx, timeout, time.Second, func() bool {
		waiting = waiting[:0]
		deps, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
		if err != nil {
			waiting = append(waiting, err.Error())
			return false
		}
		for _, d := range deps.Items {
			if !deploymentAvailable(&d) {
				waiting = append(waiting, "deployment "+d.Namespace+"/"+d.Name)
			}
		}
		sts, err := cs.AppsV1().StatefulSets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			waiting = append(waiting, err.Error())
			return false
		}
		for _, s := range sts.Items {
			if s.Spec.Replicas != nil && s.Status.ReadyReplicas < *s.Spec.Replicas {
				waiting = append(waiting, "statefulset "+s.Namespace+"/"+s.Name)
			}
		}
		apps, err := dc.Resource(schema.GroupVersionResource{Group: "k2.dev", Version: "v1", Resource: "apps"}).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, a := range apps.Items {
				if !appStatus(&a).Ready {
					waiting = append(waiting, "app "+a.GetNamespace()+"/"+a.GetName())
				}
			}
		}
		return len(waiting) == 0
	})
	if err != nil {
		return fmt.Errorf("waiting for the workloads of %s: %w (not yet: %s)", env, err, strings.Join(waiting, ", "))
	}
	if progress != nil {
		progress(fmt.Sprintf("workloads of %s running: every App ready, every Deployment and StatefulSet available", env))
	}
	return nil
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas >= want && d.Status.UpdatedReplicas >= want
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// adminRESTConfig is the admin client configuration k2 keeps for env.
func adminRESTConfig(home, env string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(home, env))
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig of %s: %w", env, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}
