package artifact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gopkg.in/yaml.v3"

	"k2.dev/k2/artifact/k8sfile"
)

// ImageRef is a container image that the artifact's workloads reference
// (APP image=, containers and initContainers of Pod templates in manifests
// and rendered charts, App objects in manifests). Config.Images lists them
// sorted by Ref, whether or not they are vendored.
type ImageRef struct {
	// Ref is the reference normalised as containerd and the kubelet
	// normalise it ("nginx:1.27" → "docker.io/library/nginx:1.27"); a
	// vendored image is imported under this name. APP images with ${ARG}
	// templates are resolved with the ARG defaults.
	Ref string `json:"ref"`
	// Digest is the image manifest digest for linux/<arch>, set when the
	// image was vendored (k2 build --vendor-images) or checked (--check).
	Digest string `json:"digest,omitempty"`
	// Platform is the vendored platform ("linux/amd64").
	Platform string `json:"platform,omitempty"`
	// Archive is the artifact layer holding the image as an OCI image-layout
	// tar ([ImageArchiveMediaType]); nil when the image is not vendored.
	Archive *ImageArchiveSpec `json:"archive,omitempty"`
	// Sources say where the workloads reference it: "APP web",
	// "manifests/web.yaml: Deployment web", "chart redis (redis/templates/x.yaml): StatefulSet redis".
	Sources []string `json:"sources"`
	// From is the base reference it was inherited from; empty when this
	// artifact's own layers reference it.
	From string `json:"from,omitempty"`
}

// ImageArchiveSpec is the manifest layer holding a vendored image.
type ImageArchiveSpec struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Vendored reports whether the image is stored in the artifact.
func (i ImageRef) Vendored() bool { return i.Archive != nil }

// NormalizeImageRef normalises a container image reference as the kubelet
// and containerd do: a missing registry is docker.io, a missing
// repository namespace on docker.io is library/, a missing tag is latest.
func NormalizeImageRef(s string) (string, error) {
	n, err := reference.ParseDockerRef(s)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	return n.String(), nil
}

// imageUse is one reference to an image found while building a layer.
type imageUse struct {
	image  string
	expand bool // an APP image: ${ARG} templates are resolved with the defaults
	source string
	pos    k8sfile.Pos
	instr  string
}

// noteImages records the images a layer's workloads reference. It runs
// for the artifact's own layers once they are built.
func (b *builder) noteImages(l k8sfile.Layer, spec *LayerSpec, blob []byte) error {
	add := func(image, source string) {
		if strings.TrimSpace(image) == "" {
			return
		}
		b.imageUses = append(b.imageUses, imageUse{image: image, source: source, pos: l.Position(), instr: instrOf(l)})
	}
	switch spec.Kind {
	case KindApp:
		a := l.(*k8sfile.App)
		b.imageUses = append(b.imageUses, imageUse{image: a.Image, expand: true, source: "APP " + a.Name, pos: a.Pos, instr: "APP"})
	case KindManifests:
		files, err := untarGz(blob)
		if err != nil {
			return err
		}
		for _, f := range files {
			if !isManifestFile(f.Name) {
				continue
			}
			file := path.Join(spec.Source, f.Name)
			if isManifestFile(spec.Source) { // ADD of a single file
				file = spec.Source
			}
			if err := imagesOf(f.Data, func(img, obj string) { add(img, file+": "+obj) }); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	case KindChart:
		names := make([]string, 0, len(b.rendered))
		for n := range b.rendered {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if !isManifestFile(n) {
				continue
			}
			src := "chart " + spec.Chart.Name + " (" + n + ")"
			if err := imagesOf([]byte(b.rendered[n]), func(img, obj string) { add(img, src+": "+obj) }); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
		}
	}
	return nil
}

func instrOf(l k8sfile.Layer) string {
	switch l.(type) {
	case *k8sfile.Add:
		return "ADD"
	case *k8sfile.Install:
		return "INSTALL"
	case *k8sfile.App:
		return "APP"
	}
	return fmt.Sprintf("%T", l)
}

// podSpecPaths are where each workload kind keeps its Pod spec.
var podSpecPaths = map[string][]string{
	"Pod":                   {"spec"},
	"PodTemplate":           {"template", "spec"},
	"Deployment":            {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

// imagesOf calls found with each container image of each workload object
// in a (multi-document) manifest, and the object ("Deployment web").
func imagesOf(data []byte, found func(image, object string)) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		walkObject(doc, found)
	}
}

func walkObject(doc map[string]any, found func(image, object string)) {
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	kind := str(doc, "kind")
	if items, ok := doc["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				walkObject(m, found)
			}
		}
		return
	}
	name := ""
	if md, ok := doc["metadata"].(map[string]any); ok {
		name = str(md, "name")
	}
	obj := strings.TrimSpace(kind + " " + name)
	if kind == AppKind && strings.HasPrefix(str(doc, "apiVersion"), "k2.dev/") {
		if spec, ok := doc["spec"].(map[string]any); ok {
			found(str(spec, "image"), obj)
		}
		return
	}
	p, ok := podSpecPaths[kind]
	if !ok {
		return
	}
	var cur any = doc
	for _, k := range p {
		m, ok := cur.(map[string]any)
		if !ok {
			return
		}
		cur = m[k]
	}
	spec, ok := cur.(map[string]any)
	if !ok {
		return
	}
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok {
				found(str(m, "image"), obj)
			}
		}
	}
}

// resolveImages turns the image uses of the build and the base's images
// into cfg.Images and, with VendorImages, stores every image not vendored
// yet as an archive layer. Problems are reported all at once.
func (b *builder) resolveImages(ctx context.Context) error {
	byRef := map[string]*ImageRef{}
	firstUse := map[string]imageUse{}
	for _, im := range b.baseImages {
		im := im
		im.Sources = append([]string(nil), im.Sources...)
		byRef[im.Ref] = &im
	}
	defaults := b.argDefaults()
	var errs []error
	for _, u := range b.imageUses {
		raw := u.image
		if u.expand {
			s, err := k8sfile.Expand(raw, defaults)
			if err != nil {
				if b.opts.VendorImages {
					errs = append(errs, b.posErr(u.pos, u.instr, noDefaultErr(raw, defaults, err)))
				} else {
					b.log.Debug("image not recorded: it needs an ARG value", "image", raw, "source", u.source)
				}
				continue
			}
			raw = s
		}
		ref, err := NormalizeImageRef(raw)
		if err != nil {
			if b.opts.VendorImages {
				errs = append(errs, b.posErr(u.pos, u.instr, fmt.Errorf("%s: %w", u.source, err)))
			} else {
				b.log.Warn("not an image reference", "image", raw, "source", u.source)
			}
			continue
		}
		im := byRef[ref]
		if im == nil {
			im = &ImageRef{Ref: ref}
			byRef[ref] = im
		} else if im.From != "" {
			im.From = "" // referenced by this artifact's own layers too
		}
		if _, ok := firstUse[ref]; !ok {
			firstUse[ref] = u
		}
		if !containsString(im.Sources, u.source) {
			im.Sources = append(im.Sources, u.source)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	refs := make([]string, 0, len(byRef))
	for r := range byRef {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	b.cfg.Images = nil
	for _, r := range refs {
		im := byRef[r]
		sort.Strings(im.Sources)
		if b.opts.VendorImages && im.Archive == nil {
			if err := b.vendorImage(ctx, im); err != nil {
				errs = append(errs, b.imageErr(im, firstUse[r], err))
				continue
			}
		}
		b.cfg.Images = append(b.cfg.Images, *im)
	}
	return errors.Join(errs...)
}

var templateRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// noDefaultErr explains why an APP image cannot be resolved at build.
func noDefaultErr(image string, defaults map[string]string, err error) error {
	var missing []string
	for _, m := range templateRef.FindAllStringSubmatch(image, -1) {
		if _, ok := defaults[m[1]]; !ok && !containsString(missing, m[1]) {
			missing = append(missing, m[1])
		}
	}
	if len(missing) == 0 {
		return fmt.Errorf("image %s: %w", image, err)
	}
	return fmt.Errorf("image %s uses ARG %s, which has no default; --vendor-images pulls images as the ARG defaults name them: give it a default (ARG %s=<value>) or build without --vendor-images",
		image, strings.Join(missing, ", "), missing[0])
}

// imageErr names the image, where it is referenced and what went wrong.
func (b *builder) imageErr(im *ImageRef, u imageUse, err error) error {
	if u.instr == "" { // only inherited from the base
		return b.posErr(b.f.From.Pos, "FROM", fmt.Errorf("image %s (inherited: %s): %w", im.Ref, strings.Join(im.Sources, ", "), err))
	}
	return b.posErr(u.pos, u.instr, fmt.Errorf("image %s (%s): %w", im.Ref, u.source, err))
}

// imageDescs are the manifest layers of the vendored images, in
// cfg.Images order, after the applied layers.
func (b *builder) imageDescs() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, im := range b.cfg.Images {
		if im.Archive != nil {
			out = append(out, archiveDesc(im))
		}
	}
	return out
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
