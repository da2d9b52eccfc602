package artifact

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"k2.dev/k2/artifact/k8sfile"
)

//go:embed base
var baseFS embed.FS

// builtinBase is a base artifact generated from content embedded in k2.
type builtinBase struct {
	kubernetes string // full Kubernetes version
	dir        string // in baseFS
}

// builtinBases are the built-in bases, one per supported Kubernetes minor.
var builtinBases = map[string]builtinBase{
	"k2/base:v1.37": {kubernetes: "v1.37.2", dir: "base/v1.37"},
}

// BuiltinBases returns the references of the built-in bases, sorted.
func BuiltinBases() []string {
	var out []string
	for r := range builtinBases {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// EnsureBuiltin generates the built-in base ref into the store (tagging it
// ref) and returns its manifest. It always regenerates, which costs
// milliseconds, so the tag always names this binary's base; generation is
// deterministic, so the digest depends only on the embedded content and this
// code, and existing blobs are reused.
func EnsureBuiltin(ctx context.Context, s *Store, ref string) (ocispec.Descriptor, error) {
	bb, ok := builtinBases[ref]
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("%s is not a built-in base (have %v)", ref, BuiltinBases())
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer unlock()
	sub, err := fs.Sub(baseFS, bb.dir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	f := &k8sfile.File{
		Name: "builtin:" + ref,
		From: k8sfile.From{Ref: "scratch"},
		Labels: []k8sfile.Label{
			{Key: "dev.k2.base", Value: ref},
		},
		Layers:   []k8sfile.Layer{&k8sfile.Add{Path: "k2-system", Name: "k2-system"}},
		Machines: []k8sfile.MachinePool{{Pool: "control-plane", Count: "1"}},
		OS:       &k8sfile.OS{Name: k8sfile.OSK2},
	}
	b := &builder{f: f, opts: BuildOptions{Store: s, Context: sub, Ref: ref}, log: slog.New(slog.DiscardHandler), blobs: s.oci}
	res, err := b.build(ctx, &Config{Kubernetes: bb.kubernetes})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("generating built-in base %s: %w", ref, err)
	}
	return res.Manifest, nil
}
