package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
	"k8s.io/klog/v2"
	schedulingv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	rbacrest "k8s.io/kubernetes/pkg/registry/rbac/rest"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// The apiserver is not ready before its post-start hooks have run. Two of the
// upstream hooks, the RBAC bootstrap policy and the system priority classes,
// wait a full second before their first attempt (wait.Poll), which was half of
// k2's start-up. k2 disables those two and registers hooks that do the same
// work at once, retrying every 100 ms, and reconcile the RBAC objects
// concurrently.
//
// Not carried over: the upstream RBAC hook also migrates clusters created
// before Kubernetes 1.9 (aggregated roles) and 1.14 (split bindings); a k2
// cluster never had those.
var replacedHooks = []string{rbacrest.PostStartHookName, schedulingrest.PostStartHookName}

const (
	rbacHookName     = "k2/bootstrap-roles"
	priorityHookName = "k2/bootstrap-system-priority-classes"
	// bootstrapTimeout is upstream's 30 s made generous: on a slow machine
	// (a VM under emulation, a busy host) the first requests of a starting
	// apiserver take longer, and a hook that gives up stops the server,
	// which then starts over and gives up again, for ever.
	bootstrapTimeout = 5 * time.Minute
	bootstrapWorkers = 8
)

// bootstrapHooks are k2's replacements, by hook name.
func bootstrapHooks() map[string]genericapiserver.PostStartHookFunc {
	return map[string]genericapiserver.PostStartHookFunc{
		rbacHookName:     retryingHook(rbacHookName, ensureBootstrapPolicy),
		priorityHookName: retryingHook(priorityHookName, ensureSystemPriorityClasses),
	}
}

// retryingHook runs ensure at once and then every 100 ms until it succeeds. As
// upstream, a hook that cannot finish (in bootstrapTimeout) fails, which stops
// the server: a cluster without its bootstrap policy does not work.
func retryingHook(name string, ensure func(context.Context, kubernetes.Interface) error) genericapiserver.PostStartHookFunc {
	return func(hc genericapiserver.PostStartHookContext) error {
		client, err := kubernetes.NewForConfig(hc.LoopbackClientConfig)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(hc, bootstrapTimeout)
		defer cancel()
		var last error
		err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			if last = ensure(ctx, client); last != nil {
				klog.Warningf("%s: %v; retrying", name, last)
				return false, nil
			}
			return true, nil
		})
		if err != nil && last != nil {
			return fmt.Errorf("%s: %w", name, last)
		}
		return err
	}
}

// ensureSystemPriorityClasses creates the system-node-critical and
// system-cluster-critical PriorityClasses where missing.
func ensureSystemPriorityClasses(ctx context.Context, client kubernetes.Interface) error {
	pcs := client.SchedulingV1().PriorityClasses()
	for _, pc := range schedulingv1.SystemPriorityClasses() {
		_, err := pcs.Get(ctx, pc.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = pcs.Create(ctx, pc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("PriorityClass %s: %w", pc.Name, err)
		}
	}
	return nil
}

// ensureBootstrapPolicy creates or reconciles (adds missing rules and
// subjects to) every bootstrap ClusterRole, ClusterRoleBinding, Role and
// RoleBinding of Kubernetes' RBAC policy, the same set and the same
// reconciliation as the upstream hook.
func ensureBootstrapPolicy(ctx context.Context, client kubernetes.Interface) error {
	rbac := client.RbacV1()
	var jobs []func() error
	for _, r := range append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...) {
		jobs = append(jobs, reconcileRole("clusterrole/"+r.Name, reconciliation.ReconcileRoleOptions{
			Role:    reconciliation.ClusterRoleRuleOwner{ClusterRole: &r},
			Client:  reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()},
			Confirm: true,
		}))
	}
	for _, b := range append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...) {
		jobs = append(jobs, reconcileBinding("clusterrolebinding/"+b.Name, reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: &b},
			Client:      reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()},
			Confirm:     true,
		}))
	}
	for ns, roles := range bootstrappolicy.NamespaceRoles() {
		for _, r := range roles {
			jobs = append(jobs, reconcileRole("role/"+ns+"/"+r.Name, reconciliation.ReconcileRoleOptions{
				Role:    reconciliation.RoleRuleOwner{Role: &r},
				Client:  reconciliation.RoleModifier{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()},
				Confirm: true,
			}))
		}
	}
	for ns, bindings := range bootstrappolicy.NamespaceRoleBindings() {
		for _, b := range bindings {
			jobs = append(jobs, reconcileBinding("rolebinding/"+ns+"/"+b.Name, reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: &b},
				Client:      reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()},
				Confirm:     true,
			}))
		}
	}
	// Make sure storage answers before starting ~200 requests.
	if _, err := rbac.ClusterRoles().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return err
	}
	return runJobs(ctx, jobs, bootstrapWorkers)
}

func reconcileRole(what string, o reconciliation.ReconcileRoleOptions) func() error {
	return reconcile(what, func() (bool, reconciliation.ReconcileOperation, any, error) {
		r, err := o.Run()
		return r.Protected, r.Operation, r.MissingRules, err
	})
}

func reconcileBinding(what string, o reconciliation.ReconcileRoleBindingOptions) func() error {
	return reconcile(what, func() (bool, reconciliation.ReconcileOperation, any, error) {
		r, err := o.Run()
		return r.Protected, r.Operation, r.MissingSubjects, err
	})
}

// reconcile runs one reconciliation, retrying transient errors. A protected
// object (annotation rbac.authorization.kubernetes.io/autoupdate: "false") is
// left as its owner made it, as upstream does.
func reconcile(what string, run func() (protected bool, op reconciliation.ReconcileOperation, missing any, err error)) func() error {
	return func() error {
		return retryTransient(func() error {
			protected, op, missing, err := run()
			if err == nil && protected && op != reconciliation.ReconcileNone {
				klog.Warningf("skipped reconcile-protected %s.%s, which lacks: %v", what, rbacv1.GroupName, missing)
			}
			return wrap(what, err)
		})
	}
}

func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// retryTransient retries conflicts and "service unavailable" (the apiserver
// answers that while storage versions are updated).
func retryTransient(f func() error) error {
	return retry.OnError(retry.DefaultBackoff, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsServiceUnavailable(err)
	}, f)
}

// runJobs runs every job on n workers and returns all their errors joined.
func runJobs(ctx context.Context, jobs []func() error, n int) error {
	work := make(chan func() error)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			for job := range work {
				if err := job(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, job := range jobs {
		select {
		case work <- job:
		case <-ctx.Done():
			mu.Lock()
			errs = append(errs, ctx.Err())
			mu.Unlock()
			break feed
		}
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}
