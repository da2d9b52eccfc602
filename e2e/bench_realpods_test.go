package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/imagetest"
)

// BenchmarkRealPods measures real nodes (kubelet + containerd) of the local
// provider in one run: `k2 deploy` of 1 control plane + 2 kubelet workers to
// App ready, pod start latency on a warm node (image present: create →
// Running as the API reports it, 20 pods one after another), and each
// worker's memory: the agent process (kubelet, kube-proxy, DNS in-process)
// plus its containerd child, as RSS and as PSS (RSS counts the shared pages
// of the one k2 binary once per process; PSS splits them).
//
// Targets (issue 8): deploy ≤ 20 s, pod start p50 ≤ 1.5 s, agent
// (kubelet + containerd) ≤ 150 MB per node.
//
//	K2_E2E=1 K2_BIN=$PWD/bin/k2 go test ./e2e -run '^$' -bench BenchmarkRealPods -benchtime 1x
func BenchmarkRealPods(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("real pods need root")
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	image := strings.TrimPrefix(reg.URL, "http://") + "/web:v1"
	imagetest.Push(b, imagetest.HTTPServerImage(b), image)
	for range b.N {
		home := b.TempDir()
		dir := b.TempDir()
		k8sfile := fmt.Sprintf("FROM k2/base:v1.37\nAPP web image=%s port=8080 replicas=2\nMACHINES control-plane=1 worker=2\n", image)
		if err := os.WriteFile(filepath.Join(dir, "K8sfile"), []byte(k8sfile), 0o644); err != nil {
			b.Fatal(err)
		}
		mustK2(b, home, "build", "-q", "-t", "bench:v1", dir)
		start := time.Now()
		mustK2(b, home, "deploy", "bench:v1", "--provider", "local", "--env", "bench")
		deploy := time.Since(start)

		cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(home, "clusters", "bench", "admin.kubeconfig"))
		if err != nil {
			b.Fatal(err)
		}
		cs := kubernetes.NewForConfigOrDie(cfg)
		lat := podStartLatencies(b, cs, image, 20)

		// Memory: the largest sample per worker over a minute, every 2 s,
		// after 10 s to settle (agents and containerd hand back start-up
		// memory in their first ~45 s; one early reading would flatter them).
		time.Sleep(10 * time.Second)
		workers := []string{"bench-worker-0", "bench-worker-1"}
		rows, best := map[string]string{}, map[string]float64{}
		var maxRSS, maxPSS, maxAnon float64
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(2 * time.Second) {
			for _, w := range workers {
				pid := machineChild(b, filepath.Join(home, "local", "machines", w))
				cd := childWith(pid, "containerd")
				aRSS, aPSS, aAnon := memMB(pid)
				cRSS, cPSS, cAnon := memMB(cd)
				if aRSS+cRSS >= best[w] {
					best[w] = aRSS + cRSS
					rows[w] = fmt.Sprintf("%s: agent RSS %.0f MB (PSS %.0f, anon %.0f), containerd RSS %.0f MB (PSS %.0f, anon %.0f), total RSS %.0f MB, PSS %.0f MB, anon %.0f MB",
						w, aRSS, aPSS, aAnon, cRSS, cPSS, cAnon, aRSS+cRSS, aPSS+cPSS, aAnon+cAnon)
				}
				maxRSS, maxPSS, maxAnon = max(maxRSS, aRSS+cRSS), max(maxPSS, aPSS+cPSS), max(maxAnon, aAnon+cAnon)
			}
		}
		mustK2(b, home, "destroy", "bench", "--yes")

		b.Logf("deploy 1 control plane + 2 kubelet workers to App ready: %s (target ≤ 20 s)", deploy.Round(time.Millisecond))
		b.Logf("pod start on a warm node, %d pods: p50 %s, p90 %s, max %s (target p50 ≤ 1.5 s)",
			len(lat), pct(lat, 50), pct(lat, 90), pct(lat, 100))
		for _, w := range workers {
			b.Log(rows[w])
		}
		b.Logf("per node (kubelet + containerd), largest of 1 min of samples: RSS %.0f MB, PSS %.0f MB, anonymous %.0f MB (target ≤ 150 MB)", maxRSS, maxPSS, maxAnon)
		b.ReportMetric(deploy.Seconds(), "deploy_s")
		b.ReportMetric(pct(lat, 50).Seconds(), "podstart_p50_s")
		b.ReportMetric(maxRSS, "node_rss_MB")
		b.ReportMetric(maxPSS, "node_pss_MB")
		b.ReportMetric(maxAnon, "node_anon_MB")
	}
}

// podStartLatencies creates n pods one after another (the image is
// already on the nodes) and returns create → Running for each.
func podStartLatencies(b *testing.B, cs kubernetes.Interface, image string, n int) []time.Duration {
	ctx := context.Background()
	var out []time.Duration
	for i := range n {
		name := fmt.Sprintf("lat-%d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				Containers:                    []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}},
				TerminationGracePeriodSeconds: new(int64),
			},
		}
		t := time.Now()
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for {
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.Phase == corev1.PodRunning {
				out = append(out, time.Since(t))
				break
			}
			if time.Since(t) > 2*time.Minute {
				b.Fatalf("pod %s not Running after 2 min: %+v", name, p.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range n {
		_ = cs.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("lat-%d", i), metav1.DeleteOptions{})
	}
	return out
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p+99)/100 - 1
	return s[max(0, min(i, len(s)-1))].Round(time.Millisecond)
}

// childWith is the first child of pid whose command line holds word.
func childWith(pid int, word string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[1] == strconv.Itoa(pid) {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if strings.Contains(string(cmd), word) {
				n, _ := strconv.Atoi(e.Name())
				return n
			}
		}
	}
	return 0
}

// memMB is a process's RSS, PSS and anonymous memory in MB (smaps_rollup).
func memMB(pid int) (rss, pss, anon float64) {
	if pid == 0 {
		return 0, 0, 0
	}
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "Rss:":
				rss = kb / 1024
			case "Pss:":
				pss = kb / 1024
			case "Anonymous:":
				anon = kb / 1024
			}
		}
	}
	return rss, pss, anon
}
