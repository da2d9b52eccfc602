package integration

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
	schedulingv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// TestBootstrapPolicy checks what k2's own post-start hooks (which replace the
// upstream RBAC and priority-class hooks to start a second sooner) must leave
// behind: every bootstrap ClusterRole, ClusterRoleBinding, Role and
// RoleBinding of Kubernetes' policy, complete (a dry-run reconcile finds
// nothing to add), and the system PriorityClasses; and that /readyz waits for
// k2's hooks, not the upstream ones.
func TestBootstrapPolicy(t *testing.T) {
	ctx := context.Background()
	rbac := kube.RbacV1()
	nss := kube.CoreV1().Namespaces()
	var checked int
	check := func(what string, op reconciliation.ReconcileOperation, err error) {
		t.Helper()
		checked++
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if op != reconciliation.ReconcileNone {
			t.Errorf("%s: reconcile would %s it: the bootstrap hook left it missing or incomplete", what, op)
		}
	}
	for _, r := range append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...) {
		res, err := (&reconciliation.ReconcileRoleOptions{
			Role:   reconciliation.ClusterRoleRuleOwner{ClusterRole: &r},
			Client: reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()},
		}).Run()
		check("clusterrole "+r.Name, res.Operation, err)
	}
	for _, b := range append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...) {
		res, err := (&reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: &b},
			Client:      reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()},
		}).Run()
		check("clusterrolebinding "+b.Name, res.Operation, err)
	}
	for ns, roles := range bootstrappolicy.NamespaceRoles() {
		for _, r := range roles {
			res, err := (&reconciliation.ReconcileRoleOptions{
				Role:   reconciliation.RoleRuleOwner{Role: &r},
				Client: reconciliation.RoleModifier{Client: rbac, NamespaceClient: nss},
			}).Run()
			check("role "+ns+"/"+r.Name, res.Operation, err)
		}
	}
	for ns, bindings := range bootstrappolicy.NamespaceRoleBindings() {
		for _, b := range bindings {
			res, err := (&reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: &b},
				Client:      reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: nss},
			}).Run()
			check("rolebinding "+ns+"/"+b.Name, res.Operation, err)
		}
	}
	if checked < 100 {
		t.Errorf("checked only %d bootstrap RBAC objects; the policy has well over 100", checked)
	}

	for _, want := range schedulingv1.SystemPriorityClasses() {
		got, err := kube.SchedulingV1().PriorityClasses().Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("PriorityClass %s: %v", want.Name, err)
			continue
		}
		if got.Value != want.Value {
			t.Errorf("PriorityClass %s: value %d, want %d", want.Name, got.Value, want.Value)
		}
	}

	body, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "1").DoRaw(ctx)
	if err != nil {
		t.Fatalf("/readyz: %v\n%s", err, body)
	}
	for _, want := range []string{"[+]poststarthook/k2/bootstrap-roles ok", "[+]poststarthook/k2/bootstrap-system-priority-classes ok"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/readyz?verbose lacks %q:\n%s", want, body)
		}
	}
	for _, gone := range []string{"poststarthook/rbac/bootstrap-roles", "poststarthook/scheduling/bootstrap-system-priority-classes"} {
		if strings.Contains(string(body), gone) {
			t.Errorf("/readyz?verbose still has the upstream hook %q:\n%s", gone, body)
		}
	}
}
