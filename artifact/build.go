package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/usererr"
)

// BuildOptions configure [Build]. The zero value builds nothing useful:
// Store and Context are required.
type BuildOptions struct {
	// Store is the local store: bases are read from it and, unless Check,
	// the result is written to it.
	Store *Store
	// Context is the build context: ADD paths and values= files are
	// relative to it (os.DirFS of the K8sfile's directory).
	Context fs.FS
	// Ref tags the result in the store; empty leaves it untagged.
	Ref string
	// Check validates everything (FROM, sources, charts, stable-only) but
	// writes nothing to the store.
	Check bool
	// AllowBeta accepts alpha/beta apiVersions and records it in the config.
	AllowBeta bool
	// Pull fetches a FROM registry reference even when the store has it,
	// so a moved tag is seen; by default the store's copy is used.
	Pull bool
	// Repos resolves helm/<alias>/<chart>; nil means no aliases.
	Repos *Repos
	// Remote configures registry access for FROM and oci:// charts.
	Remote RemoteOptions
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// VendorImages pulls every image the workloads reference (for
	// linux/runtime.GOARCH, with Remote) and stores each as an image layer,
	// so deploying needs no registry (k2 build --vendor-images). Without it
	// the images are only listed in Config.Images.
	VendorImages bool
}

// BuildResult is what [Build] made.
type BuildResult struct {
	Ref      string             `json:"ref,omitempty"`
	Digest   string             `json:"digest"`
	Manifest ocispec.Descriptor `json:"-"`
	Config   *Config            `json:"-"`
}

// Build turns a parsed K8sfile into an artifact. Problems with the input are
// usererr.KindInvalid errors naming the K8sfile position; everything is
// checked before it returns (FROM, every layer, stable-only, the images),
// so one run reports every problem, sorted by position. [BuildFile] also
// reports the syntax errors with them.
func Build(ctx context.Context, f *k8sfile.File, opts BuildOptions) (*BuildResult, error) {
	if opts.Store == nil || opts.Context == nil {
		return nil, errors.New("building: Store and Context are required")
	}
	unlock, err := opts.Store.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res, err := newBuilder(f, opts).build(ctx, nil)
	if err != nil && ctx.Err() == nil {
		return nil, sortedErrors([]error{err}, nil)
	}
	return res, err
}

func newBuilder(f *k8sfile.File, opts BuildOptions) *builder {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &builder{f: f, opts: opts, log: log, blobs: opts.Store.oci}
	if opts.Check {
		b.blobs = overlay{memory.New(), opts.Store.oci}
	}
	return b
}

// builder holds the state of one build.
type builder struct {
	f     *k8sfile.File
	opts  BuildOptions
	log   *slog.Logger
	blobs content.Storage // where new blobs go
	cfg   Config
	descs []ocispec.Descriptor
	// pendingApp is the spec of the APP layer being built, added to
	// cfg.Apps once the layer is accepted.
	pendingApp *AppSpec

	// Container images (vendor.go): the images the own layers reference,
	// the base's images, and the last chart render.
	imageUses  []imageUse
	baseImages []ImageRef
	rendered   map[string]string
}

// build runs the build; seed, if not nil, sets settings that K8sfiles cannot
// (the built-in bases' Kubernetes version). It checks everything before it
// fails — FROM, the machine pools, every layer, stable-only, the images —
// and returns every problem at once, joined (Build sorts them by position).
func (b *builder) build(ctx context.Context, seed *Config) (*BuildResult, error) {
	b.cfg = Config{Version: ConfigVersion, Layers: []LayerSpec{}}
	var errs []error
	if err := b.from(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err) // the layers are still checked, as if FROM scratch
	}
	if seed != nil && seed.Kubernetes != "" {
		b.cfg.Kubernetes = seed.Kubernetes
	}
	if err := b.settings(); err != nil {
		errs = append(errs, err)
	}
	for _, l := range b.f.Layers {
		if err := b.layer(ctx, l); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			errs = append(errs, err)
		}
	}
	b.cfg.AllowBeta = b.cfg.AllowBeta || b.opts.AllowBeta
	if !b.opts.AllowBeta {
		if err := b.checkStable(); err != nil {
			errs = append(errs, usererr.Wrap(usererr.KindInvalid, err,
				"use stable API versions, or build with --allow-beta to accept them"))
		}
	}
	// With other problems a build stops here (vendoring would pull every
	// image for nothing); a check goes on, to report the images' too.
	if len(errs) == 0 || b.opts.Check {
		if err := b.resolveImages(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err // Build sorts them
	}
	return b.finish(ctx)
}

// posErr attaches a K8sfile position and instruction to err as an
// invalid-input error (or, for a registry error found while handling the
// instruction, a registry error: exit 5). Joined errors each get the
// position, so that every problem is reported on its own line.
func (b *builder) posErr(p k8sfile.Pos, instr string, err error) error {
	if p.File == "" {
		p.File = b.f.Name
	}
	if p.File == "" {
		p.File = k8sfile.DefaultName
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, b.posErr(p, instr, e))
		}
		return errors.Join(errs...)
	}
	pe := &PosError{Pos: p, Instruction: instr, Err: err}
	if errors.Is(err, context.Canceled) {
		return pe // interrupted: exit 130
	}
	kind := usererr.KindInvalid
	var ue *usererr.Error
	if errors.As(err, &ue) {
		kind = ue.Kind
	}
	return usererr.Wrap(kind, pe, "")
}

// settings merges the K8sfile's ARG, LABEL and MACHINES into the inherited ones.
func (b *builder) settings() error {
	for _, a := range b.f.Args {
		spec := ArgSpec{Name: a.Name, Default: a.Default}
		replaced := false
		for i := range b.cfg.Args {
			if b.cfg.Args[i].Name == a.Name {
				b.cfg.Args[i], replaced = spec, true
			}
		}
		if !replaced {
			b.cfg.Args = append(b.cfg.Args, spec)
		}
	}
	for _, l := range b.f.Labels {
		if b.cfg.Labels == nil {
			b.cfg.Labels = map[string]string{}
		}
		b.cfg.Labels[l.Key] = l.Value
	}
	if o := b.f.OS; o != nil {
		b.cfg.OS = &OSSpec{Name: o.Name, Version: o.Version}
	}
	for _, m := range b.f.Machines {
		spec := MachineSpec{Pool: m.Pool, Count: m.Count, CPU: m.CPU, Memory: m.Memory, Disk: m.Disk, Arch: m.Arch, Datastore: m.Datastore}
		replaced := false
		for i := range b.cfg.Machines {
			if b.cfg.Machines[i].Pool == m.Pool {
				b.cfg.Machines[i], replaced = spec, true
			}
		}
		if !replaced {
			b.cfg.Machines = append(b.cfg.Machines, spec)
		}
	}
	if len(b.cfg.Machines) > 0 && !slices.ContainsFunc(b.cfg.Machines, func(m MachineSpec) bool { return m.Pool == k8sfile.ControlPlanePool }) {
		pos := b.f.From.Pos
		if len(b.f.Machines) > 0 {
			pos = b.f.Machines[0].Pos
		}
		return b.posErr(pos, "MACHINES", fmt.Errorf("no %s pool here or in the base %s; add MACHINES %s=1",
			k8sfile.ControlPlanePool, b.f.From.Ref, k8sfile.ControlPlanePool))
	}
	return nil
}

// layer builds one ADD, INSTALL or APP layer and appends it.
func (b *builder) layer(ctx context.Context, l k8sfile.Layer) error {
	b.pendingApp, b.rendered = nil, nil
	var (
		spec  *LayerSpec
		blob  []byte
		instr string
		err   error
	)
	switch l := l.(type) {
	case *k8sfile.Add:
		instr = "ADD"
		spec, blob, err = b.add(l)
	case *k8sfile.Install:
		instr = "INSTALL"
		spec, blob, err = b.install(ctx, l)
	case *k8sfile.App:
		instr = "APP"
		spec, blob, err = b.app(l)
	default:
		return fmt.Errorf("building: unknown layer type %T", l)
	}
	if err != nil {
		return b.posErr(l.Position(), instr, err)
	}
	if spec.Name == "" {
		spec.Name = l.LayerName()
	}
	if prev := b.cfg.Layer(spec.Name); prev != nil {
		where := "an earlier instruction"
		if prev.From != "" {
			where = "base " + prev.From
		}
		return b.posErr(l.Position(), instr, fmt.Errorf("layer name %q is already used by %s; give this one another name with 'as <name>' or name=", spec.Name, where))
	}
	if err := b.noteImages(l, spec, blob); err != nil {
		return b.posErr(l.Position(), instr, err)
	}
	d, err := pushBytes(ctx, b.blobs, spec.MediaType, blob, map[string]string{
		AnnotationTitle: spec.Name, AnnotationLayerKind: spec.Kind})
	if err != nil {
		return err
	}
	spec.Digest, spec.Size = d.Digest.String(), d.Size
	if spec.Chart != nil {
		spec.Chart.Digest = spec.Digest
	}
	if spec.Objects == nil {
		spec.Objects = []Object{}
	}
	b.log.Info("layer", "name", spec.Name, "kind", spec.Kind, "digest", spec.Digest, "size", spec.Size, "objects", len(spec.Objects))
	b.cfg.Layers = append(b.cfg.Layers, *spec)
	if b.pendingApp != nil {
		b.cfg.Apps = append(b.cfg.Apps, *b.pendingApp)
	}
	b.descs = append(b.descs, d)
	return nil
}

// checkStable returns a *BetaError listing every object of every layer,
// inherited ones included, whose apiVersion is alpha or beta.
func (b *builder) checkStable() error {
	var bad []BetaObject
	for _, l := range b.cfg.Layers {
		for _, o := range l.Objects {
			if IsPreRelease(o.APIVersion) {
				bad = append(bad, BetaObject{Layer: l.Name, Source: objectSource(l, o), From: l.From, Object: o})
			}
		}
	}
	if len(bad) > 0 {
		return &BetaError{Objects: bad}
	}
	return nil
}

func objectSource(l LayerSpec, o Object) string {
	if l.Chart != nil {
		return "chart " + l.Chart.Name + " (" + o.File + ")"
	}
	if o.File != "" {
		return path.Join(l.Source, o.File)
	}
	return l.Source
}

// finish writes the config and manifest and tags the result.
func (b *builder) finish(ctx context.Context) (*BuildResult, error) {
	cfgJSON, err := json.Marshal(b.cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	// Every artifact k2 writes follows its published schema (docs/spec.md).
	if err := ValidateConfig(cfgJSON); err != nil {
		return nil, fmt.Errorf("k2 built a config its own schema refuses (a bug; please report it): %w", err)
	}
	cfgDesc, err := pushBytes(ctx, b.blobs, ConfigMediaType, cfgJSON, nil)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{AnnotationCreated: FixedCreated}
	for k, v := range b.cfg.Labels {
		ann[k] = v
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       cfgDesc,
		Layers:       append(append([]ocispec.Descriptor(nil), b.descs...), b.imageDescs()...),
		Annotations:  ann,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	mDesc, err := pushBytes(ctx, b.blobs, ocispec.MediaTypeImageManifest, mJSON, nil)
	if err != nil {
		return nil, err
	}
	mDesc.ArtifactType = ArtifactType
	res := &BuildResult{Digest: mDesc.Digest.String(), Manifest: mDesc, Config: &b.cfg}
	if b.opts.Ref != "" && !b.opts.Check {
		ref, err := NormalizeRef(b.opts.Ref)
		if err != nil {
			return nil, err
		}
		if err := b.opts.Store.Tag(ctx, mDesc, ref); err != nil {
			return nil, fmt.Errorf("tagging %s: %w", ref, err)
		}
		res.Ref = ref
	}
	return res, nil
}

// ctxPath checks that p, relative to the build context, stays inside it and
// returns it in io/fs form.
func ctxPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if path.IsAbs(p) || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q is absolute; use a path relative to the build context", p)
	}
	c := path.Clean(strings.ReplaceAll(p, "\\", "/"))
	if !fs.ValidPath(c) {
		return "", fmt.Errorf("path %q is outside the build context", p)
	}
	return c, nil
}

// readCtxFile reads a file of the build context.
func (b *builder) readCtxFile(p string) ([]byte, error) {
	c, err := ctxPath(p)
	if err != nil {
		return nil, err
	}
	if fi, err := fs.Stat(b.opts.Context, c); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory; name a file", p)
	}
	data, err := fs.ReadFile(b.opts.Context, c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missingPath(b.opts.Context, c, p)
	}
	return data, err
}
