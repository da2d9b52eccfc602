package controlplane

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// RoleLabel is the label k2 agents put on their Node; NodeRoleController
// mirrors it to node-role.kubernetes.io/<role>, which the NodeRestriction
// admission plugin does not let a node set on itself and which kubectl shows
// in its ROLES column.
const RoleLabel = "k2.dev/role"

// NodeRoleController labels every Node that has RoleLabel with the matching
// node-role.kubernetes.io/<role> label, until ctx ends.
func NodeRoleController(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	f := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	label := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		role := n.Labels[RoleLabel]
		key := "node-role.kubernetes.io/" + role
		if role == "" {
			return
		}
		if _, done := n.Labels[key]; done {
			return
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: ""}}})
		// A failure is retried at the next update or resync.
		cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "k2-node-roles"})
	}
	f.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    label,
		UpdateFunc: func(_, n any) { label(n) },
	})
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	return nil
}
