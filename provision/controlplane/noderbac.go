package controlplane

import (
	"context"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// NodeProxierBinding grants every node (group system:nodes) the upstream
// system:node-proxier role: a k2 agent runs kube-proxy and the node's DNS
// with its node credentials, and they watch Services and EndpointSlices,
// which the Node authorizer alone does not allow.
const NodeProxierBinding = "k2:node-proxier"

// ensureNodeRBAC creates NodeProxierBinding once the API answers; it
// retries until ctx ends (the RBAC bootstrap roles may come a moment after
// /readyz).
func ensureNodeRBAC(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: NodeProxierBinding, Labels: map[string]string{"app.kubernetes.io/managed-by": "k2"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-proxier"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
	}
	for {
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			<-ctx.Done()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}
