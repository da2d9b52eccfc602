package apply

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func podOf(t *testing.T, s string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := yaml.Unmarshal([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// The pod statuses below are as a kubelet v1.37 node reported them in k2's
// e2e runs (pull from a loopback registry where nothing listens, a container
// that exits at once), trimmed to the fields read.
const (
	podMeta = `metadata: {name: web-5d9c-x2k, namespace: default, uid: u1, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d9c, uid: r1, controller: true}]}
spec: {nodeName: w0, containers: [{name: app, image: "127.0.0.1:5999/web:1.0"}]}
`
	pullBackOff = podMeta + `status:
  phase: Pending
  conditions: [{type: PodScheduled, status: "True"}, {type: Ready, status: "False"}]
  containerStatuses:
  - name: app
    image: "127.0.0.1:5999/web:1.0"
    ready: false
    state: {waiting: {reason: ImagePullBackOff, message: 'Back-off pulling image "127.0.0.1:5999/web:1.0": ErrImagePull: failed to pull and unpack image "127.0.0.1:5999/web:1.0": failed to resolve image: failed to do request: Head "https://127.0.0.1:5999/v2/web/manifests/1.0": read tcp 127.0.0.1:51622->127.0.0.1:5999: read: connection reset by peer'}}
`
	crashLoop = podMeta + `status:
  phase: Running
  conditions: [{type: PodScheduled, status: "True"}, {type: Ready, status: "False"}]
  containerStatuses:
  - name: app
    ready: false
    restartCount: 3
    state: {waiting: {reason: CrashLoopBackOff, message: back-off 40s restarting failed container=app}}
    lastState: {terminated: {exitCode: 1, reason: Error}}
`
	unschedulable = podMeta + `status:
  phase: Pending
  conditions: [{type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available: 1 Insufficient example.com/gpu."}]
`
	exited = podMeta + `status:
  phase: Running
  conditions: [{type: PodScheduled, status: "True"}, {type: Ready, status: "False"}]
  containerStatuses:
  - {name: app, ready: false, restartCount: 1, state: {terminated: {exitCode: 2, reason: Error}}}
`
	probing = podMeta + `status:
  phase: Running
  conditions: [{type: PodScheduled, status: "True"}, {type: Ready, status: "False"}]
  containerStatuses:
  - {name: app, ready: false, state: {running: {}}}
`
	ready = podMeta + `status:
  phase: Running
  conditions: [{type: PodScheduled, status: "True"}, {type: Ready, status: "True"}]
  containerStatuses:
  - {name: app, ready: true, state: {running: {}}}
`
)

func TestDiagnosePod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pod string
		want      string // podProblem.line(), "" for ready
		bad       bool
		backedOff bool
	}{
		{"pull back-off", pullBackOff,
			"pod web-5d9c-x2k: ImagePullBackOff: 127.0.0.1:5999/web:1.0: read: connection reset by peer", true, true},
		{"crash loop", crashLoop, "pod web-5d9c-x2k: CrashLoopBackOff (3 restarts, exit code 1)", true, true},
		{"unschedulable", unschedulable, "pod web-5d9c-x2k: Unschedulable: 0/1 nodes are available: 1 Insufficient example.com/gpu.", true, false},
		{"exited", exited, "pod web-5d9c-x2k: Error: exited with code 2", true, true},
		{"probing", probing, "pod web-5d9c-x2k: NotReady: running, not ready yet (readiness probe)", false, false},
		{"creating", podMeta + "status: {phase: Pending, conditions: [{type: PodScheduled, status: \"True\"}], containerStatuses: [{name: app, state: {waiting: {reason: ContainerCreating}}}]}",
			"pod web-5d9c-x2k: ContainerCreating", false, false},
		{"scheduled, no status yet", podMeta + "status: {phase: Pending}", "pod web-5d9c-x2k: Pending: scheduled on w0", false, false},
		{"invalid name", podMeta + "status: {phase: Pending, containerStatuses: [{name: app, state: {waiting: {reason: InvalidImageName, message: 'Failed to apply default image tag \"Web\": couldn''t parse image name'}}}]}",
			`pod web-5d9c-x2k: InvalidImageName: 127.0.0.1:5999/web:1.0: Failed to apply default image tag "Web": couldn't parse image name`, true, true},
		{"ready", ready, "", false, false},
		{"succeeded", podMeta + "status: {phase: Succeeded}", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := diagnosePod(podOf(t, tt.pod))
			if tt.want == "" {
				if p != nil {
					t.Fatalf("diagnosePod = %+v, want ready", p)
				}
				return
			}
			if p == nil {
				t.Fatal("diagnosePod = nil, want a problem")
			}
			if diff := cmp.Diff(tt.want, p.line()); diff != "" {
				t.Errorf("line (-want +got):\n%s", diff)
			}
			if p.bad() != tt.bad || p.backedOff() != tt.backedOff {
				t.Errorf("bad, backedOff = %v, %v; want %v, %v", p.bad(), p.backedOff(), tt.bad, tt.backedOff)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	t.Parallel()
	now := time.Now()
	node := corev1.Node{}
	if err := yaml.Unmarshal([]byte(`{metadata: {name: w0}, status: {allocatable: {cpu: "2", memory: 4Gi}}}`), &node); err != nil {
		t.Fatal(err)
	}
	gpuPod := podOf(t, unschedulable)
	gpuPod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
	bigPod := podOf(t, unschedulable)
	bigPod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"memory": resource.MustParse("64Gi"), "cpu": resource.MustParse("1")}
	roomPod := podOf(t, unschedulable)
	roomPod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"memory": resource.MustParse("1Gi")}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		seenFor time.Duration // how long ago the problem was first seen
		stuck   bool
		detail  string
	}{
		{"pull within grace", podOf(t, pullBackOff), 30 * time.Second, false, ""},
		{"pull past grace", podOf(t, pullBackOff), 61 * time.Second, true, ""},
		{"crash loop at 3 restarts", podOf(t, crashLoop), 0, true, ""},
		{"crash loop at 2 restarts", func() *corev1.Pod {
			p := podOf(t, crashLoop)
			p.Status.ContainerStatuses[0].RestartCount = 2
			return p
		}(), 0, false, ""},
		{"exited again after 3 restarts", func() *corev1.Pod {
			p := podOf(t, exited)
			p.Status.ContainerStatuses[0].RestartCount = 3
			return p
		}(), 0, true, ""},
		{"exited after 1 restart", podOf(t, exited), 0, false, ""},
		{"resource no node has", gpuPod, 0, true, "it requests 1 example.com/gpu and no node has example.com/gpu"},
		{"more than any node has", bigPod, 0, true, "it requests 64Gi memory and the largest node has 4Gi allocatable"},
		{"waiting for room", roomPod, time.Hour, false, ""},
		{"probing", podOf(t, probing), time.Hour, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &waiter{opts: WaitOptions{PullGrace: DefaultPullGrace}, since: map[string]time.Time{},
				nodes: []corev1.Node{node}, nodesAt: now}
			p := diagnosePod(tt.pod)
			w.since[p.UID+"/"+p.Container+"/"+class(p.Reason)] = now.Add(-tt.seenFor)
			detail, hint := w.verdict(t.Context(), p, tt.pod, now)
			if (hint != "") != tt.stuck || detail != tt.detail {
				t.Errorf("verdict = %q, %q; want stuck %v, detail %q", detail, hint, tt.stuck, tt.detail)
			}
		})
	}
}

func TestBrief(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`failed to pull and unpack image "x": failed to resolve image: failed to do request: Head "https://127.0.0.1:5999/v2/web/manifests/1.0": dial tcp 127.0.0.1:5999: connect: connection refused`: "connect: connection refused",
		"secret \"db\" not found": "secret \"db\" not found",
		"EOF":                     "EOF",
	} {
		if got := brief(in); got != want {
			t.Errorf("brief(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPodSelector(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ obj, want string }{
		{`{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {selector: {matchLabels: {app: web}}}}`, "app=web"},
		{`{apiVersion: k2.dev/v1, kind: App, metadata: {name: web}}`, "k2.dev/app=web"},
		{`{apiVersion: batch/v1, kind: Job, metadata: {name: j}, spec: {selector: {matchExpressions: [{key: job, operator: In, values: [j]}]}}}`, "job in (j)"},
		{`{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}`, "<nil>"},
	} {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(tt.obj), &u.Object); err != nil {
			t.Fatal(err)
		}
		got := "<nil>"
		if sel := podSelector(u); sel != nil {
			got = sel.String()
		}
		if got != tt.want {
			t.Errorf("podSelector(%s) = %s, want %s", tt.obj, got, tt.want)
		}
	}
}

func TestStuckErrorText(t *testing.T) {
	t.Parallel()
	exit := int32(1)
	e := &StuckError{Object: ObjectRef{Kind: "App", Namespace: "default", Name: "crash"}, Pod: "crash-7f-x", Node: "w0",
		Container: "app", Image: "127.0.0.1:5999/crash:1.0", Reason: ReasonCrashLoopBackOff, Message: "back-off 40s restarting failed container=app",
		Restarts: 3, LastExit: &exit, Logs: []string{"listening", "listen tcp: unknown port"}, Hint: "fix it"}
	want := `App default/crash will not become ready: pod crash-7f-x (container app, image 127.0.0.1:5999/crash:1.0, on w0): CrashLoopBackOff after 3 restarts, last exit code 1: back-off 40s restarting failed container=app
  its last log lines:
    | listening
    | listen tcp: unknown port
  what to do: fix it`
	if diff := cmp.Diff(want, e.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	pull := &StuckError{Object: ObjectRef{Kind: "Deployment", Namespace: "default", Name: "web"}, Pod: "web-1", Container: "app",
		Image: "127.0.0.1:5999/web:1.0", Reason: ReasonImagePullBackOff, Message: "connection\nrefused", For: 61 * time.Second, Hint: "push it"}
	if got := pull.Error(); !strings.HasSuffix(got, "ImagePullBackOff for 1m1s: connection refused; push it") {
		t.Errorf("pull error: %s", got)
	}
}
