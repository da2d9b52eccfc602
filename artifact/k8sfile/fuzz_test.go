package k8sfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"k2.dev/k2/artifact/k8sfile"
)

// FuzzParse feeds arbitrary input to the parser, seeded with every
// testdata/*.K8sfile. Invariants: no panic; a failed parse returns no File
// and at most MaxErrors *Error values, each naming the file and a position
// inside the input; a successful one has a FROM; parsing is deterministic.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.K8sfile")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		src, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		const name = "fuzz/K8sfile"
		file, warns, err := k8sfile.Parse(name, src)
		lines := strings.Split(string(src), "\n")
		if err != nil {
			if file != nil {
				t.Errorf("Parse returned a File with an error: %v", err)
			}
			es := k8sfile.Errors(err)
			if len(es) == 0 || len(es) > k8sfile.MaxErrors {
				t.Errorf("Parse error holds %d *Error values, want 1–%d: %v", len(es), k8sfile.MaxErrors, err)
			}
			for _, e := range es {
				p := e.Pos
				if p.File != name {
					t.Errorf("error %q names file %q, want %q", e, p.File, name)
				}
				if p.Line < 1 || p.Line > len(lines) {
					t.Fatalf("error %q: line %d outside 1–%d", e, p.Line, len(lines))
				}
				if max := utf8.RuneCountInString(lines[p.Line-1]) + 1; p.Col < 1 || p.Col > max {
					t.Errorf("error %q: column %d outside 1–%d", e, p.Col, max)
				}
				if e.Msg == "" {
					t.Errorf("error at %d:%d has no message", p.Line, p.Col)
				}
			}
		} else if file == nil || file.From.Ref == "" {
			t.Fatalf("Parse succeeded without a FROM: %+v", file)
		}
		if again := render(k8sfile.Parse(name, src)); again != render(file, warns, err) {
			t.Errorf("Parse is not deterministic:\n%s\nthen:\n%s", render(file, warns, err), again)
		}
	})
}

// BenchmarkParse parses a realistic K8sfile: every instruction, comments,
// continuations and templates, about 60 lines.
func BenchmarkParse(b *testing.B) {
	src := []byte(realistic)
	if _, _, err := k8sfile.Parse("K8sfile", src); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := k8sfile.Parse("K8sfile", src); err != nil {
			b.Fatal(err)
		}
	}
}

const realistic = `# K8sfile for the shop cluster.
ARG  base_version=v1.37
FROM k2/base:${base_version}

ARG replicas=2            # web replicas per environment
ARG api_replicas=3
ARG domain                # required: set per environment
ARG env=staging
ARG worker_count=3
ARG worker_memory=8Gi
ARG redis_version=17.3.2

LABEL org.opencontainers.image.title=shop \
      org.opencontainers.image.description="The shop: web, api, cache and database" \
      team=payments

# Vendored charts and manifests.
ADD ./charts/argocd
ADD ./manifests/namespaces.yaml
ADD ./manifests/network-policies as netpol
ADD ./overlays/${env} as overlay

# Charts fetched at build time.
INSTALL helm/k8s.io/metrics-server version=3.12.1 namespace=kube-system
INSTALL oci://registry.local:5000/charts/ingress-nginx \
    version=4.11.0 \
    namespace=ingress \
    values=values/ingress.yaml
INSTALL https://charts.example.com/stable#redis version=${redis_version} namespace=cache \
    set architecture=replication \
        replica.replicaCount=${replicas} \
        auth.enabled=true
INSTALL https://charts.example.com/stable#postgresql name=db namespace=data \
    set auth.username=shop auth.database=orders primary.persistence.size=20Gi

# Applications.
APP web image=registry.local:5000/shop/web:2.4.1 port=80 port=443 replicas=${replicas} \
    env DOMAIN=${domain} ENV=${env} GREETING="hello, world"
APP api image=registry.local:5000/shop/api:2.4.1 port=8080,9090 replicas=${api_replicas} \
    env DATABASE_URL="postgres://shop@db.data:5432/orders" CACHE=redis.cache:6379
APP worker image=registry.local:5000/shop/worker:2.4.1 replicas=1 \
    env QUEUE=orders
APP docs image=nginx:1.27 port=80 replicas=1

# Machines.
MACHINES control-plane=3 cpu=2 memory=4Gi disk=40Gi arch=amd64
MACHINES worker=${worker_count} cpu=4 memory=${worker_memory} disk=100Gi arch=amd64
MACHINES gpu=1 cpu=8 memory=64Gi disk=500Gi arch=arm64
`
