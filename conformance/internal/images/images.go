// Package images builds, without internet, the container images the
// upstream Kubernetes e2e suite runs, and pushes them to a registry on
// loopback. Programs the upstream images carry come from the same Go module
// as the suite (agnhost, the sample API server, etcd, nnp); tools come from
// this Debian machine (curl, netcat-openbsd, dnsutils, iproute2, socat,
// bash, nginx) with the shared libraries ldd names; busybox, with its
// applet links, is the one Inputs.Busybox names (scripts/conformance builds
// upstream's from Debian's source package). Where an image differs from
// upstream's, Catalog says how (Image.StandIn).
package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"k2.dev/k2/conformance/internal/rootfs"
)

// Inputs are the programs and files the images are made of.
type Inputs struct {
	// Bin holds the programs built from the suite's module: agnhost,
	// sample-apiserver, etcd, nnp, pause.
	Bin string
	// K8sSrc is the k8s.io/kubernetes module directory (kitten and nautilus
	// pages, agnhost's porter certificate).
	K8sSrc string
	// Busybox is the busybox executable (default /bin/busybox).
	Busybox string
	// Nginx is a directory holding Debian's nginx package unpacked
	// (usr/sbin/nginx, etc/nginx/mime.types); "" leaves the nginx images out.
	Nginx string
}

// Image is one image of the catalog.
type Image struct {
	// Repo is the repository under the registry, as the suite names it
	// with the registry keys mapped by RepoList ("e2e-test-images/agnhost").
	Repo string
	// StandIn says how the image differs from upstream's; "" if it is built
	// the way upstream builds it.
	StandIn string
	build   func(in Inputs) (v1.Image, error)
}

// Catalog lists the images this package builds, by repository.
func Catalog() map[string]Image {
	imgs := []Image{
		{Repo: "e2e-test-images/agnhost", build: agnhost,
			StandIn: "busybox, and Debian's curl, netcat-openbsd, dnsutils, iproute2, socat, bash and getent in place of Alpine's packages; no iperf, coredns or /var/registry"},
		{Repo: "e2e-test-images/busybox", build: busybox, StandIn: "the busybox below, applets in /bin"},
		{Repo: "e2e-test-images/kitten", build: func(in Inputs) (v1.Image, error) { return webPage(in, "kitten") }},
		{Repo: "e2e-test-images/nautilus", build: func(in Inputs) (v1.Image, error) { return webPage(in, "nautilus") }},
		{Repo: "e2e-test-images/nginx", build: nginx,
			StandIn: "Debian's nginx 1.22 with an nginx.conf like the official image's, on busybox, in place of the official Alpine image"},
		{Repo: "e2e-test-images/sample-apiserver", build: sampleAPIServer,
			StandIn: "built from k8s.io/sample-apiserver at the suite's version, on busybox in place of Alpine"},
		{Repo: "e2e-test-images/nonewprivs", build: nonewprivs, StandIn: "busybox in place of Alpine"},
		{Repo: "e2e-test-images/nonroot", build: nonroot, StandIn: "busybox in place of debian-base"},
		{Repo: "e2e-test-images/glibc-dns-testing", build: glibcDNS,
			StandIn: "Debian's dash, dig and getent with busybox for the other commands in place of debian:bookworm-slim; no coredns"},
		{Repo: "pause", build: pause, StandIn: "k2's own pause program (pause(2) until SIGTERM/SIGINT) in place of upstream's"},
		{Repo: "etcd", build: etcd, StandIn: "etcd built from go.etcd.io/etcd/server/v3 as pinned by the suite's module; etcd alone, no etcdctl"},
	}
	out := map[string]Image{}
	for _, i := range imgs {
		out[i.Repo] = i
	}
	return out
}

// RepoList is the KUBE_TEST_REPO_LIST document that points every registry
// the suite knows at reg (host:port on loopback), and the invalid and
// private registries at dead, a loopback address where nothing listens.
func RepoList(reg, dead string) string {
	keys := [][2]string{
		{"promoterE2eRegistry", reg + "/e2e-test-images"},
		{"buildImageRegistry", reg + "/build-image"},
		{"gcEtcdRegistry", reg},
		{"gcRegistry", reg},
		{"sigStorageRegistry", reg + "/sig-storage"},
		{"dockerLibraryRegistry", reg + "/library"},
		{"cloudProviderGcpRegistry", reg + "/cloud-provider-gcp"},
		{"invalidRegistry", dead + "/invalid"},
		{"privateRegistry", dead + "/private"},
	}
	var b strings.Builder
	for _, kv := range keys {
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	return b.String()
}

// Result is what Build did with one image the suite names.
type Result struct {
	Ref     string `json:"ref"`
	Digest  string `json:"digest,omitempty"`
	StandIn string `json:"standIn,omitempty"`
	// Missing says why the image was not built ("" if it was).
	Missing string `json:"missing,omitempty"`
}

// Build builds every image of refs (the suite's --list-images output) that
// the catalog knows and pushes it to reg; the rest come back with Missing
// set. The same build serves every tag of a repository, each tag with its
// own digest (a label names the tag) so that an update from one tag to
// another changes the image as the suite expects.
func Build(ctx context.Context, reg string, refs []string, in Inputs, progress func(string)) ([]Result, error) {
	cat := Catalog()
	built := map[string]v1.Image{}
	var out []Result
	sort.Strings(refs)
	for _, ref := range refs {
		repo, tag, ok := strings.Cut(strings.TrimPrefix(ref, reg+"/"), ":")
		if !ok || !strings.HasPrefix(ref, reg+"/") {
			out = append(out, Result{Ref: ref, Missing: "not served by the loopback registry"})
			continue
		}
		im, known := cat[repo]
		if !known || (repo == "e2e-test-images/nginx" && in.Nginx == "") {
			out = append(out, Result{Ref: ref, Missing: "no offline build for this image"})
			continue
		}
		base, ok := built[repo]
		if !ok {
			progress("building " + repo)
			b, err := im.build(in)
			if err != nil {
				return nil, fmt.Errorf("building %s: %w", repo, err)
			}
			built[repo], base = b, b
		}
		img, err := tagged(base, tag)
		if err != nil {
			return nil, err
		}
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, err
		}
		if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("pushing %s: %w", ref, err)
		}
		d, _ := img.Digest()
		out = append(out, Result{Ref: ref, Digest: d.String(), StandIn: im.StandIn})
	}
	return out, nil
}

// DescribeBusybox says which busybox the images carry, for the report.
func DescribeBusybox(path string) string {
	if path == "" {
		path = "/bin/busybox"
	}
	out, _ := exec.Command(path).Output()
	first, _, _ := strings.Cut(string(out), "\n")
	first = strings.TrimSuffix(strings.TrimSpace(first), " multi-call binary.")
	if strings.Contains(first, "Debian") {
		return first + " (Debian's busybox-static: its shell runs its own applets before the programs on PATH, and Debian reverts upstream's keeping of environment variables whose names are not identifiers)"
	}
	return first + " (upstream source, defconfig, static; upstream's images have 1.37)"
}

// tagged labels img with the tag it is pushed as.
func tagged(img v1.Image, tag string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["dev.k2.conformance.tag"] = tag
	return mutate.ConfigFile(img, cf)
}

// image makes a one-layer image of fs.
func image(fs *rootfs.FS, c v1.Config) (v1.Image, error) {
	l, err := fs.Layer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	if c.Env == nil {
		c.Env = []string{"PATH=" + defaultPath}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Config = c
	return mutate.ConfigFile(img, cf)
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func bin(in Inputs, name string) string { return filepath.Join(in.Bin, name) }

// exists fails with a hint if a needed host file is missing.
func exists(p, hint string) error {
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("%s missing (%s)", p, hint)
	}
	return nil
}
