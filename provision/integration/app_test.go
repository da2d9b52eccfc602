package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"k2.dev/k2/provision/app"
	"k2.dev/k2/provision/apply"
)

const timeout = 60 * time.Second

func applyYAML(t *testing.T, ns, manifest string, opts apply.Options) *apply.Result {
	t.Helper()
	objs, err := apply.Decode(strings.NewReader(manifest), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	opts.Namespace = ns
	res, err := apply.Apply(context.Background(), restCfg, objs, opts)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func getApp(t *testing.T, ns, name string) *app.App {
	t.Helper()
	u, err := dyn.Resource(app.GVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.FromUnstructured(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func readyCond(a *app.App) metav1.Condition {
	for _, c := range a.Status.Conditions {
		if c.Type == app.ConditionReady {
			return c
		}
	}
	return metav1.Condition{}
}

func describe(a *app.App) string {
	c := readyCond(a)
	s := fmt.Sprintf("gen=%d observed=%d replicas=%s ready=%s/%s: %s url=%s", a.Generation, a.Status.ObservedGeneration,
		a.Status.Replicas, c.Status, c.Reason, c.Message, a.Status.URL)
	if a.Status.LastError != nil {
		s += fmt.Sprintf(" lastError=%s: %s", a.Status.LastError.Object, a.Status.LastError.Message)
	}
	return s
}

// markPodsReady does what a kubelet would: it marks every pod of the App
// Running and Ready, so the ReplicaSet and Deployment controllers count it.
func markPodsReady(t *testing.T, ns, appName string) int {
	t.Helper()
	ctx := context.Background()
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: app.LabelApp + "=" + appName})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		now := metav1.Now()
		p.Status.Phase = corev1.PodRunning
		p.Status.StartTime = &now
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		if _, err := kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func eventReasons(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	evs, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=App,involvedObject.name=" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range evs.Items {
		out[e.Reason] += e.Message + "; "
	}
	return out
}

// TestAppLifecycle drives one App through create, status roll-up, update,
// a hand edit of a child, an invalid spec and deletion.
func TestAppLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "app-lifecycle")

	// Create, versionless, in the shape K8sfile APP layers produce.
	res := applyYAML(t, ns, `
kind: App
metadata: {name: web}
spec:
  image: nginx:1.27
  ports: ["80"]
  replicas: 2
  env: [{name: GREETING, value: hello}]
`, apply.Options{})
	if got := res.Objects[0].Object.APIVersion; got != "k2.dev/v1" || !res.Objects[0].Versionless {
		t.Errorf("App resolved to %q (versionless=%v), want k2.dev/v1", got, res.Objects[0].Versionless)
	}
	a := getApp(t, ns, "web")

	var dep *appsv1.Deployment
	eventually(t, timeout, "children created", func() (bool, string) {
		var err error
		dep, err = kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if _, err := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "web-env", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if ref := metav1.GetControllerOf(dep); ref == nil || ref.UID != a.UID || ref.Kind != "App" {
		t.Errorf("Deployment controller ref = %+v, want the App %s", ref, a.UID)
	}
	if *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Containers[0].ReadinessProbe.TCPSocket.Port.IntVal != 80 {
		t.Errorf("Deployment spec = replicas %d, probe %+v", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].ReadinessProbe)
	}

	// Status before any pod runs: not ready, 0/2.
	eventually(t, timeout, "status 0/2 not ready", func() (bool, string) {
		a := getApp(t, ns, "web")
		c := readyCond(a)
		return a.Status.Replicas == "0/2" && c.Status == metav1.ConditionFalse && a.Status.URL == "http://web.app-lifecycle.svc:80", describe(a)
	})
	// Act as the kubelet; the real controllers roll it up to the App.
	eventually(t, timeout, "App Ready 2/2", func() (bool, string) {
		markPodsReady(t, ns, "web")
		a := getApp(t, ns, "web")
		c := readyCond(a)
		return c.Status == metav1.ConditionTrue && a.Status.Replicas == "2/2", describe(a)
	})
	ev := eventReasons(t, ns, "web")
	for _, r := range []string{app.EventCreated, app.EventReady} {
		if ev[r] == "" {
			t.Errorf("no %s event on the App; events: %v", r, ev)
		}
	}
	if !strings.Contains(ev[app.EventCreated], "Deployment/web") || !strings.Contains(ev[app.EventCreated], "Service/web") {
		t.Errorf("Created events = %q, want Deployment/web and Service/web", ev[app.EventCreated])
	}

	// Update: more replicas, a public host, a disruption budget.
	applyYAML(t, ns, `
kind: App
metadata: {name: web}
spec:
  image: nginx:1.27
  ports: ["80"]
  replicas: 3
  env: [{name: GREETING, value: hello}]
  expose: {host: web.example.com}
  disruption: {minAvailable: 1}
`, apply.Options{})
	eventually(t, timeout, "update reaches the children", func() (bool, string) {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if _, err := kube.NetworkingV1().Ingresses(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		a := getApp(t, ns, "web")
		return *d.Spec.Replicas == 3 && a.Status.URL == "http://web.example.com/", fmt.Sprintf("replicas=%d %s", *d.Spec.Replicas, describe(a))
	})

	// A hand edit of a child is reconciled back.
	_, err := kube.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":7,"template":{"spec":{"containers":[{"name":"app","image":"nginx:hacked"}]}}}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kube.CoreV1().Services(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"selector":{"k2.dev/app":"someone-else"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, "hand edits reverted", func() (bool, string) {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, err := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		img := d.Spec.Template.Spec.Containers[0].Image
		return *d.Spec.Replicas == 3 && img == "nginx:1.27" && s.Spec.Selector[app.LabelApp] == "web",
			fmt.Sprintf("replicas=%d image=%s selector=%v", *d.Spec.Replicas, img, s.Spec.Selector)
	})
	if ev := eventReasons(t, ns, "web"); !strings.Contains(ev[app.EventUpdated], "Deployment/web") {
		t.Errorf("no Updated event for the reverted Deployment; events: %v", ev)
	}

	// A child deleted by hand comes back.
	svc, err := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, "deleted Service re-created", func() (bool, string) {
		s, err := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return s.UID != svc.UID, "same UID"
	})

	// Dropping expose deletes the Ingress.
	applyYAML(t, ns, `
kind: App
metadata: {name: web}
spec: {image: nginx:1.27, ports: ["80"], replicas: 3, env: [{name: GREETING, value: hello}]}
`, apply.Options{})
	eventually(t, timeout, "Ingress and PDB removed", func() (bool, string) {
		_, err1 := kube.NetworkingV1().Ingresses(ns).Get(ctx, "web", metav1.GetOptions{})
		_, err2 := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), fmt.Sprintf("ingress: %v, pdb: %v", err1, err2)
	})

	// An invalid spec the schema lets through: the status says why.
	applyYAML(t, ns, `
kind: App
metadata: {name: web}
spec: {image: nginx:1.27, ports: [80, "80"], replicas: 3}
`, apply.Options{})
	eventually(t, timeout, "invalid spec reported", func() (bool, string) {
		a := getApp(t, ns, "web")
		c := readyCond(a)
		return c.Reason == app.ReasonInvalidSpec && a.Status.LastError != nil && a.Status.LastError.Object == "App/web" &&
			strings.Contains(a.Status.LastError.Message, "listed twice"), describe(a)
	})

	// Delete: the garbage collector removes the children.
	if err := dyn.Resource(app.GVR).Namespace(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*timeout, "children garbage-collected", func() (bool, string) {
		_, e1 := kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		_, e2 := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		_, e3 := kube.CoreV1().ConfigMaps(ns).Get(ctx, "web-env", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2) && apierrors.IsNotFound(e3), fmt.Sprintf("%v / %v / %v", e1, e2, e3)
	})
}

// TestAppStatefulAndApplyError gives an App a volume (a StatefulSet), then
// makes an update the API server rejects: the error lands in the status
// with the child that caused it, and the controller keeps retrying.
func TestAppStatefulAndApplyError(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "app-stateful")
	applyYAML(t, ns, `
kind: App
metadata: {name: db}
spec: {image: postgres:17, ports: [5432], volume: {path: /data, size: 1Gi}, env: [{name: PASSWORD, value: pw, secret: true}]}
`, apply.Options{})
	eventually(t, timeout, "StatefulSet and Secret created", func() (bool, string) {
		s, err := kube.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		sec, err := kube.CoreV1().Secrets(ns).Get(ctx, "db-env", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(s.Spec.VolumeClaimTemplates) == 1 && string(sec.Data["PASSWORD"]) == "pw", "statefulset without a claim template"
	})
	// volumeClaimTemplates are immutable: the server refuses the change.
	applyYAML(t, ns, `
kind: App
metadata: {name: db}
spec: {image: postgres:17, ports: [5432], volume: {path: /data, size: 5Gi}, env: [{name: PASSWORD, value: pw, secret: true}]}
`, apply.Options{})
	eventually(t, timeout, "apply error in status", func() (bool, string) {
		a := getApp(t, ns, "db")
		c := readyCond(a)
		return c.Reason == app.ReasonApplyFailed && a.Status.LastError != nil && a.Status.LastError.Object == "StatefulSet/db", describe(a)
	})
	eventually(t, timeout, "ApplyFailed event", func() (bool, string) {
		ev := eventReasons(t, ns, "db")
		return strings.Contains(ev[app.EventApplyFailed], "StatefulSet/db"), fmt.Sprint(ev)
	})
	// Fixing the spec clears the error.
	applyYAML(t, ns, `
kind: App
metadata: {name: db}
spec: {image: postgres:17, ports: [5432], volume: {path: /data, size: 1Gi}, env: [{name: PASSWORD, value: pw, secret: true}]}
`, apply.Options{})
	eventually(t, timeout, "error cleared", func() (bool, string) {
		a := getApp(t, ns, "db")
		return a.Status.LastError == nil && readyCond(a).Reason != app.ReasonApplyFailed, describe(a)
	})
}

// TestAppPrinterColumnsServed checks the table the API server renders for
// kubectl get (the printer columns) through the Table API.
func TestAppPrinterColumnsServed(t *testing.T) {
	ns := namespace(t, "app-columns")
	applyYAML(t, ns, `
kind: App
metadata: {name: hello}
spec: {image: nginx:1.27, ports: [8080], replicas: 0}
`, apply.Options{})
	eventually(t, timeout, "App Ready with 0 replicas", func() (bool, string) {
		a := getApp(t, ns, "hello")
		return readyCond(a).Status == metav1.ConditionTrue, describe(a)
	})
	body, err := kube.CoreV1().RESTClient().Get().AbsPath("/apis/k2.dev/v1/namespaces/"+ns+"/apps").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := yaml.Unmarshal(body, &table); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if got := strings.Join(cols, ","); got != "Name,Ready,Replicas,URL,Image,Age,Error" {
		t.Errorf("columns = %s", got)
	}
	if len(table.Rows) != 1 || fmt.Sprint(table.Rows[0].Cells[1:5]) != "[True 0/0 http://hello.app-columns.svc:8080 nginx:1.27]" {
		t.Errorf("rows = %v", table.Rows)
	}
}

// TestAppAutoscaleAndWorkloadSwitch gives an App an autoscaler, then a
// volume: the HorizontalPodAutoscaler owns the replica count, and the
// Deployment makes way for a StatefulSet.
func TestAppAutoscaleAndWorkloadSwitch(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "app-autoscale")
	applyYAML(t, ns, `
kind: App
metadata: {name: api}
spec: {image: registry.local/api:v1, ports: [8080], autoscale: {min: 2, max: 5, cpu: 70}}
`, apply.Options{})
	eventually(t, timeout, "HPA and Deployment", func() (bool, string) {
		h, err := kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cpu := d.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String()
		a := getApp(t, ns, "api")
		return h.Spec.ScaleTargetRef.Name == "api" && *h.Spec.MinReplicas == 2 && h.Spec.MaxReplicas == 5 &&
				*h.Spec.Metrics[0].Resource.Target.AverageUtilization == 70 && cpu == "100m" && a.Status.DesiredReplicas >= 2,
			fmt.Sprintf("hpa target=%s cpu request=%s %s", h.Spec.ScaleTargetRef.Name, cpu, describe(a))
	})
	// The replica count is not k2-app's: the autoscaler may change it.
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range d.ManagedFields {
		if mf.Manager == app.FieldManager && strings.Contains(string(mf.FieldsV1.Raw), `"f:replicas"`) {
			t.Errorf("k2-app owns spec.replicas of an autoscaled Deployment: %s", mf.FieldsV1.Raw)
		}
	}

	applyYAML(t, ns, `
kind: App
metadata: {name: api}
spec: {image: registry.local/api:v1, ports: [8080], replicas: 1, volume: {path: /data}}
`, apply.Options{})
	eventually(t, timeout, "StatefulSet replaces Deployment and HPA", func() (bool, string) {
		_, errS := kube.AppsV1().StatefulSets(ns).Get(ctx, "api", metav1.GetOptions{})
		_, errD := kube.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
		_, errH := kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "api", metav1.GetOptions{})
		a := getApp(t, ns, "api")
		return errS == nil && apierrors.IsNotFound(errD) && apierrors.IsNotFound(errH) && a.Status.Workload == "StatefulSet/api",
			fmt.Sprintf("sts=%v deploy=%v hpa=%v %s", errS, errD, errH, describe(a))
	})
	if ev := eventReasons(t, ns, "api"); !strings.Contains(ev[app.EventDeleted], "Deployment/api") {
		t.Errorf("no Deleted event for the Deployment: %v", ev)
	}
}

// TestAppRecoversWithBackoff makes the API server refuse a child (a
// ValidatingAdmissionPolicy denying Services in the namespace), then
// removes the policy: nothing about the App changes, so only the
// controller's retries with backoff can bring the Service in.
func TestAppRecoversWithBackoff(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "app-backoff")
	applyYAML(t, ns, `
kind: ValidatingAdmissionPolicy
metadata: {name: no-services-app-backoff}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [services]}]
  validations: [{expression: "false", message: services are blocked here}]
---
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-services-app-backoff}
spec:
  policyName: no-services-app-backoff
  validationActions: [Deny]
  matchResources: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app-backoff}}}
`, apply.Options{})
	// The policy takes a moment to be enforced; probe until it is.
	eventually(t, timeout, "policy enforced", func() (bool, string) {
		_, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "probe"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 1}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "blocked"), fmt.Sprint(err)
	})
	applyYAML(t, ns, "kind: App\nmetadata: {name: web}\nspec: {image: nginx:1.27, ports: [80]}\n", apply.Options{})
	eventually(t, timeout, "admission error in status", func() (bool, string) {
		a := getApp(t, ns, "web")
		return a.Status.LastError != nil && a.Status.LastError.Object == "Service/web" &&
			strings.Contains(a.Status.LastError.Message, "blocked"), describe(a)
	})
	if err := kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, "no-services-app-backoff", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, "no-services-app-backoff", metav1.DeleteOptions{})
	eventually(t, timeout, "Service created once the policy is gone", func() (bool, string) {
		_, err := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		a := getApp(t, ns, "web")
		return err == nil && a.Status.LastError == nil, fmt.Sprintf("%v; %s", err, describe(a))
	})
}
