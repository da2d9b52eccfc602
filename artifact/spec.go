package artifact

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart/loader"
	"oras.land/oras-go/v2/content"
)

// ConfigSchema is the JSON Schema (draft 2020-12) of the config blob,
// artifact/schema/cluster-config.v1.schema.json; docs/spec.md explains it.
//
//go:embed schema/cluster-config.v1.schema.json
var ConfigSchema []byte

// configSchemaURL is the schema's $id.
const configSchemaURL = "https://k2.dev/schemas/cluster-config.v1.schema.json"

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ConfigSchema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(configSchemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(configSchemaURL)
})

// ValidateConfig checks a config blob against ConfigSchema.
func ValidateConfig(b []byte) error {
	sch, err := compiled()
	if err != nil {
		return fmt.Errorf("compiling the config schema: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("config is not JSON: %w", err)
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("config does not follow the schema: %s", schemaLeaves(ve))
		}
		return err
	}
	return nil
}

// schemaLeaves puts a validation error's report on one line: the
// failures under its heading, "at '/layers/0/kind': value must be …".
func schemaLeaves(ve *jsonschema.ValidationError) string {
	lines := strings.Split(ve.Error(), "\n")
	var out []string
	for _, l := range lines[1:] {
		l = strings.TrimLeft(l, " -")
		if l != "" && !strings.HasSuffix(l, "validation failed") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return ve.Error()
	}
	return strings.Join(out, "; ")
}

// ErrNonConformant is wrapped by every problem Conform finds: the artifact breaks docs/spec.md.
var ErrNonConformant = errors.New("not a conformant k2 artifact")

// Conform checks that the manifest desc in f is a conformant k2 cluster
// artifact (docs/spec.md): the manifest's media type and artifactType, the
// config's media type and schema, one manifest layer per config layer
// (same digest, size and media type, with title and kind annotations) and
// then one per vendored image, every blob matching its digest, and each
// layer's content readable as its kind says. It reports every problem it
// finds, joined, each wrapping ErrNonConformant.
func Conform(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrNonConformant}, args...)...))
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		bad("manifest media type %q, want %s", desc.MediaType, ocispec.MediaTypeImageManifest)
	}
	mb, err := content.FetchAll(ctx, f, desc)
	if err != nil {
		bad("reading the manifest: %v", err)
		return errors.Join(errs...)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		bad("manifest is not JSON: %v", err)
		return errors.Join(errs...)
	}
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest {
		bad("manifest schemaVersion %d, mediaType %q; want 2 and %s", m.SchemaVersion, m.MediaType, ocispec.MediaTypeImageManifest)
	}
	if m.ArtifactType != ArtifactType {
		bad("artifactType %q, want %s", m.ArtifactType, ArtifactType)
	}
	if m.Config.MediaType != ConfigMediaType {
		bad("config media type %q, want %s", m.Config.MediaType, ConfigMediaType)
	}
	cb, err := content.FetchAll(ctx, f, m.Config)
	if err != nil {
		bad("reading the config: %v", err)
		return errors.Join(errs...)
	}
	if err := ValidateConfig(cb); err != nil {
		bad("%v", err)
		return errors.Join(errs...)
	}
	var cfg Config
	if err := json.Unmarshal(cb, &cfg); err != nil {
		bad("config: %v", err)
		return errors.Join(errs...)
	}
	var vendored []ImageRef
	for _, im := range cfg.Images {
		if im.Archive != nil {
			vendored = append(vendored, im)
		}
	}
	if want := len(cfg.Layers) + len(vendored); len(m.Layers) != want {
		bad("manifest has %d layers; the config lists %d layers and %d vendored images", len(m.Layers), len(cfg.Layers), len(vendored))
		return errors.Join(errs...)
	}
	for i, l := range cfg.Layers {
		d := m.Layers[i]
		where := fmt.Sprintf("layer %d (%s)", i, l.Name)
		if d.Digest.String() != l.Digest || d.Size != l.Size || d.MediaType != l.MediaType {
			bad("%s: manifest says %s %s (%d bytes), config %s %s (%d bytes)", where, d.MediaType, d.Digest, d.Size, l.MediaType, l.Digest, l.Size)
		}
		if d.Annotations[AnnotationTitle] != l.Name || d.Annotations[AnnotationLayerKind] != l.Kind {
			bad("%s: annotations %s=%q and %s=%q, want %q and %q", where, AnnotationTitle, d.Annotations[AnnotationTitle],
				AnnotationLayerKind, d.Annotations[AnnotationLayerKind], l.Name, l.Kind)
		}
		b, err := content.FetchAll(ctx, f, d)
		if err != nil {
			bad("%s: %v", where, err)
			continue
		}
		if err := checkLayerContent(l, b); err != nil {
			bad("%s: %v", where, err)
		}
	}
	for i, im := range vendored {
		d := m.Layers[len(cfg.Layers)+i]
		if d.MediaType != ImageArchiveMediaType || d.Digest.String() != im.Archive.Digest || d.Annotations[AnnotationLayerKind] != KindImage {
			bad("layer %d: want the vendored image %s (%s, %s, kind %s)", len(cfg.Layers)+i, im.Ref, ImageArchiveMediaType, im.Archive.Digest, KindImage)
			continue
		}
		if err := VerifyBlob(ctx, f, d); err != nil {
			bad("layer %d (image %s): %v", len(cfg.Layers)+i, im.Ref, err)
		}
	}
	return errors.Join(errs...)
}

// checkLayerContent checks that a layer's bytes are what its kind says.
func checkLayerContent(l LayerSpec, b []byte) error {
	switch l.Kind {
	case KindManifests:
		files, err := untarGz(b)
		if err != nil {
			return fmt.Errorf("not a gzipped tar: %w", err)
		}
		for _, f := range files {
			if err := checkYAML(f.Data); err != nil {
				return fmt.Errorf("%s: %w", f.Name, err)
			}
		}
	case KindChart:
		if _, err := loader.LoadArchive(bytes.NewReader(b)); err != nil {
			return fmt.Errorf("not a Helm chart archive: %w", err)
		}
	case KindApp:
		var obj struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
		}
		if err := yaml.Unmarshal(b, &obj); err != nil {
			return fmt.Errorf("not YAML: %w", err)
		}
		if obj.APIVersion != "k2.dev/v1" || obj.Kind != "App" {
			return fmt.Errorf("an app layer holds one k2.dev/v1 App, not %s %s", obj.APIVersion, obj.Kind)
		}
	}
	return nil
}

// checkYAML checks that every document of b parses.
func checkYAML(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v any
		err := dec.Decode(&v)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// VerifyBlob reads the blob d names from f, streaming, and checks it
// against d's digest and size.
func VerifyBlob(ctx context.Context, f content.Fetcher, d ocispec.Descriptor) error {
	rc, err := f.Fetch(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, d)
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return err
	}
	return vr.Verify()
}
