package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"k2.dev/k2/artifact/k8sfile"
)

// add builds an ADD layer: a chart directory (it has Chart.yaml), a chart
// archive (.tgz, .tar.gz), or a directory or file of manifests.
func (b *builder) add(l *k8sfile.Add) (*LayerSpec, []byte, error) {
	p, err := ctxPath(l.Path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := fs.Stat(b.opts.Context, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, missingPath(b.opts.Context, p, l.Path)
	}
	if err != nil {
		return nil, nil, err
	}
	name := l.Name
	if name == "" {
		name = defaultLayerName(p)
	}
	switch {
	case fi.IsDir():
		if _, err := fs.Stat(b.opts.Context, path.Join(p, "Chart.yaml")); err == nil {
			archive, err := packChartDir(b.opts.Context, p)
			if err != nil {
				return nil, nil, err
			}
			return b.chartLayer(name, l.Path, archive, "", "", nil, nil)
		}
		files, err := readTree(b.opts.Context, p, func(rel string, d fs.DirEntry) bool {
			return d.IsDir() || isManifestFile(rel)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", l.Path, err)
		}
		if len(files) == 0 {
			return nil, nil, fmt.Errorf("%s holds no .yaml, .yml or .json files and no Chart.yaml; ADD a Helm chart or a directory of manifests", l.Path)
		}
		return b.manifestsLayer(name, l.Path, files)
	case strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz"):
		archive, err := fs.ReadFile(b.opts.Context, p)
		if err != nil {
			return nil, nil, err
		}
		return b.chartLayer(name, l.Path, archive, "", "", nil, nil)
	case isManifestFile(p):
		data, err := fs.ReadFile(b.opts.Context, p)
		if err != nil {
			return nil, nil, err
		}
		return b.manifestsLayer(name, l.Path, []File{{Name: path.Base(p), Data: data}})
	}
	return nil, nil, fmt.Errorf("%s is neither a directory, a chart archive (.tgz) nor a manifest (.yaml, .yml, .json)", l.Path)
}

// missingPath explains that the context path p (written as given) does not
// exist, suggesting a close name in its directory.
func missingPath(fsys fs.FS, p, given string) error {
	hint := "paths are relative to the build context (the K8sfile's directory, or the DIR given to k2 build)"
	if ents, err := fs.ReadDir(fsys, path.Dir(p)); err == nil {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if s := k8sfile.Suggest(path.Base(p), names); s != "" {
			hint = "did you mean " + strings.TrimSuffix(given, path.Base(given)) + s + "? " + hint
		}
	}
	return fmt.Errorf("%s does not exist in the build context; %s", given, hint)
}

func defaultLayerName(p string) string {
	n := path.Base(p)
	for _, ext := range []string{".tar.gz", ".tgz", ".yaml", ".yml", ".json"} {
		n = strings.TrimSuffix(n, ext)
	}
	return n
}

// manifestsLayer packs manifest files and lists their objects.
func (b *builder) manifestsLayer(name, source string, files []File) (*LayerSpec, []byte, error) {
	var objs []Object
	var errs []error
	for _, f := range files {
		found, err := objectsOf(f.Data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path.Join(source, f.Name), err))
			continue
		}
		for i := range found {
			found[i].File = f.Name
		}
		objs = append(objs, found...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	blob, err := tarGz(files)
	if err != nil {
		return nil, nil, err
	}
	return &LayerSpec{Name: name, Kind: KindManifests, MediaType: ManifestsMediaType, Source: source, Objects: objs}, blob, nil
}

// AppAPIVersion and AppKind identify the App object an APP layer holds.
const (
	AppAPIVersion = "k2.dev/v1"
	AppKind       = "App"
)

// appObject is the App object written into an APP layer. Literal integers
// (ports, replicas) are YAML integers; ${ARG} templates stay strings and are
// resolved at deploy time.
type appObject struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   appMetadata `yaml:"metadata"`
	Spec       appSpec     `yaml:"spec"`
}

type appMetadata struct {
	Name string `yaml:"name"`
}

type appSpec struct {
	Image    string   `yaml:"image"`
	Ports    []any    `yaml:"ports,omitempty"`
	Replicas any      `yaml:"replicas,omitempty"`
	Env      []appEnv `yaml:"env,omitempty"`
}

type appEnv struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// app builds an APP layer holding one App object.
func (b *builder) app(l *k8sfile.App) (*LayerSpec, []byte, error) {
	if l.Image == "" {
		return nil, nil, fmt.Errorf("app %s has no image; add image=<ref>", l.Name)
	}
	spec := AppSpec{Name: l.Name, Image: l.Image, Replicas: l.Replicas}
	obj := appObject{APIVersion: AppAPIVersion, Kind: AppKind, Metadata: appMetadata{Name: l.Name},
		Spec: appSpec{Image: l.Image}}
	for _, p := range l.Ports {
		for _, p := range strings.Split(p, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			v, err := intOrTemplate(p, 1, 65535)
			if num, proto, ok := strings.Cut(p, "/"); ok && err != nil {
				// "53/udp": an int-or-string port, kept as a string.
				if _, err = intOrTemplate(num, 1, 65535); err == nil && !validProto(proto) {
					err = fmt.Errorf("unknown protocol %q; use tcp, udp or sctp", proto)
				}
				v = p
			}
			if err != nil {
				return nil, nil, fmt.Errorf("app %s: port %q: %w", l.Name, p, err)
			}
			spec.Ports = append(spec.Ports, p)
			obj.Spec.Ports = append(obj.Spec.Ports, v)
		}
	}
	if l.Replicas != "" {
		v, err := intOrTemplate(l.Replicas, 0, 1<<20)
		if err != nil {
			return nil, nil, fmt.Errorf("app %s: replicas %q: %w", l.Name, l.Replicas, err)
		}
		obj.Spec.Replicas = v
	}
	for _, e := range l.Env {
		spec.Env = append(spec.Env, EnvVar{Name: e.Key, Value: e.Value})
		obj.Spec.Env = append(obj.Spec.Env, appEnv{Name: e.Key, Value: e.Value})
	}
	blob, err := yaml.Marshal(obj)
	if err != nil {
		return nil, nil, err
	}
	b.pendingApp = &spec
	return &LayerSpec{Name: l.Name, Kind: KindApp, MediaType: AppMediaType, Source: "APP " + l.Name,
		Objects: []Object{{APIVersion: AppAPIVersion, Kind: AppKind, Name: l.Name, File: "app.yaml"}}}, blob, nil
}

// intOrTemplate returns s as an int within [min, max], or s itself when it
// holds a ${...} template.
func intOrTemplate(s string, min, max int) (any, error) {
	if strings.Contains(s, "${") {
		return s, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, errors.New("not an integer or ${ARG}")
	}
	if n < min || n > max {
		return nil, fmt.Errorf("out of range %d..%d", min, max)
	}
	return n, nil
}

func validProto(p string) bool {
	switch strings.ToLower(p) {
	case "tcp", "udp", "sctp":
		return true
	}
	return false
}
