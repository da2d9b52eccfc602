package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkDeploy measures, with the local provider: the wall time of
// `k2 deploy` for 1 control plane + 3 workers until the App is ready (target
// ≤ 15 s), then of `k2 upgrade` to an artifact that adds a layer of 1,000
// objects (target ≤ 10 s for the apply), and `k2 destroy`.
func BenchmarkDeploy(b *testing.B) {
	for range b.N {
		home := b.TempDir()
		dir := b.TempDir()
		k8sfile := `FROM k2/base:v1.37
ARG replicas=3
APP web image=nginx:1.27 port=80 replicas=${replicas}
MACHINES control-plane=1 worker=3 cpu=2 memory=4Gi
`
		os.WriteFile(filepath.Join(dir, "K8sfile"), []byte(k8sfile), 0o644)
		mustK2(b, home, "build", "-t", "bench:v1", dir)

		simEnv(b, home, "bench")
		start := time.Now()
		mustK2(b, home, "deploy", "bench:v1", "--provider", "local", "--env", "bench")
		deploy := time.Since(start)

		objs := filepath.Join(dir, "objects")
		os.MkdirAll(objs, 0o755)
		var sb strings.Builder
		for i := range 1000 {
			// No apiVersion: each is resolved through discovery, as users write them.
			fmt.Fprintf(&sb, "---\nkind: ConfigMap\nmetadata:\n  name: obj-%04d\ndata:\n  i: \"%d\"\n", i, i)
		}
		os.WriteFile(filepath.Join(objs, "objects.yaml"), []byte(sb.String()), 0o644)
		os.WriteFile(filepath.Join(dir, "K8sfile"), []byte(strings.Replace(k8sfile, "APP", "ADD ./objects\nAPP", 1)), 0o644)
		mustK2(b, home, "build", "-t", "bench:v2", dir)
		start = time.Now()
		mustK2(b, home, "upgrade", "bench", "bench:v2")
		apply := time.Since(start)

		start = time.Now()
		mustK2(b, home, "destroy", "bench", "--yes")
		destroy := time.Since(start)

		b.ReportMetric(deploy.Seconds(), "deploy_4machines_s")
		b.ReportMetric(apply.Seconds(), "upgrade_1000objects_s")
		b.ReportMetric(destroy.Seconds(), "destroy_s")
		fmt.Printf("k2 deploy 1 control plane + 3 workers to App ready: %.1fs; upgrade adding 1,000 objects: %.1fs; destroy: %.1fs\n",
			deploy.Seconds(), apply.Seconds(), destroy.Seconds())
	}
}
