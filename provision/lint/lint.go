// Package lint reports the objects in manifests, Helm charts and k2
// artifacts that use an alpha, beta, deprecated or removed Kubernetes API,
// with the stable replacement where one exists. It reads only; it never
// talks to a cluster. k2 build already refuses such objects; lint is the
// read-only check for manifests and charts that exist.
package lint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"k2.dev/k2/provision/apply"
)

// Problems in Finding.Problem.
const (
	ProblemRemoved    = "removed"    // Kubernetes no longer serves it
	ProblemDeprecated = "deprecated" // superseded by a stable version, still served
	ProblemBeta       = "beta"
	ProblemAlpha      = "alpha"
	ProblemInvalid    = "invalid" // the file or chart could not be read
)

// Finding is one object (or file) with a problem.
type Finding struct {
	Source      string `json:"source"`
	APIVersion  string `json:"apiVersion,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Name        string `json:"name,omitempty"`
	Problem     string `json:"problem"`
	Replacement string `json:"replacement,omitempty"`
	RemovedIn   string `json:"removedIn,omitempty"`
	Message     string `json:"message"`
}

// Report is the result of a lint run.
type Report struct {
	// Objects is how many objects were checked.
	Objects  int       `json:"objects"`
	Findings []Finding `json:"findings"`
}

// Object checks one object; ok is false when it has a problem.
func Object(u *unstructured.Unstructured) (Finding, bool) {
	f := Finding{Source: apply.Source(u), APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName()}
	if f.APIVersion == "" {
		return f, true // versionless: resolved to a stable version at apply
	}
	if apply.IsGroupOnly(f.APIVersion) {
		return f, true // a group name alone: versionless within the group
	}
	gv, err := schema.ParseGroupVersion(f.APIVersion)
	if err != nil {
		f.Problem, f.Message = ProblemInvalid, fmt.Sprintf("apiVersion %q: %v", f.APIVersion, err)
		return f, false
	}
	st := apply.VersionStability(gv.Version)
	if k, ok := apply.LookupKnownAPI(gv.WithKind(f.Kind)); ok {
		f.Replacement, f.RemovedIn = k.Replacement, k.RemovedIn
		switch {
		case k.RemovedIn != "":
			f.Problem = ProblemRemoved
			f.Message = fmt.Sprintf("%s %s was removed in Kubernetes %s", f.APIVersion, f.Kind, k.RemovedIn)
		case st != apply.Stable:
			f.Problem = string(st)
			f.Message = fmt.Sprintf("%s %s is %s", f.APIVersion, f.Kind, st)
		default:
			f.Problem = ProblemDeprecated
			f.Message = fmt.Sprintf("%s %s is deprecated", f.APIVersion, f.Kind)
		}
		if k.Replacement != "" {
			f.Message += "; use apiVersion: " + k.Replacement + " (or omit apiVersion and let k2 pick the stable version)"
		} else {
			f.Message += "; it has no stable replacement"
			if k.Note != "" {
				f.Message += ": " + k.Note
			}
		}
		return f, false
	}
	if st != apply.Stable {
		f.Problem = string(st)
		f.Message = fmt.Sprintf("%s %s is %s and k2 refuses it unless --allow-beta; no stable replacement is known to k2 (check whether its project ships a stable version)", f.APIVersion, f.Kind, st)
		return f, false
	}
	return f, true
}

// Objects checks objs and returns their findings.
func Objects(objs []*unstructured.Unstructured) *Report {
	r := &Report{Objects: len(objs), Findings: []Finding{}}
	for _, o := range objs {
		if f, ok := Object(o); !ok {
			r.Findings = append(r.Findings, f)
		}
	}
	return r
}

// Paths lints files and directories: plain manifests (.yaml, .yml, .json),
// Helm chart directories (those holding Chart.yaml) and packaged charts
// (.tgz), rendered with their default values for the newest Kubernetes.
// Unreadable files are findings too; the error is for paths that do not exist.
func Paths(ctx context.Context, paths []string) (*Report, error) {
	r := &Report{Findings: []Finding{}}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("linting %s: %w", p, err)
		}
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			switch {
			case d.IsDir():
				if _, err := os.Stat(filepath.Join(path, "Chart.yaml")); err == nil {
					r.addChart(path)
					return filepath.SkipDir
				}
			case strings.HasSuffix(d.Name(), ".tgz"):
				r.addChart(path)
			case apply.IsManifest(d.Name()) || path == p:
				objs, err := apply.ReadPaths([]string{path}, nil)
				r.add(objs, err, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("linting %s: %w", p, err)
		}
	}
	return r, nil
}

func (r *Report) add(objs []*unstructured.Unstructured, err error, source string) {
	got := Objects(objs)
	r.Objects += got.Objects
	r.Findings = append(r.Findings, got.Findings...)
	if err != nil {
		r.Findings = append(r.Findings, Finding{Source: source, Problem: ProblemInvalid, Message: err.Error()})
	}
}

func (r *Report) addChart(path string) {
	ch, err := loader.Load(path)
	if err != nil {
		r.Findings = append(r.Findings, Finding{Source: path, Problem: ProblemInvalid, Message: "loading chart: " + err.Error()})
		return
	}
	objs, err := RenderChart(ch, nil, path)
	r.add(objs, err, path)
}

// RenderChart renders a chart (with values over its defaults, as the
// newest Kubernetes) into objects whose sources read
// "<source>: <template> (rendered):<line>", CRDs from crds/ included.
func RenderChart(ch *chart.Chart, values map[string]any, source string) ([]*unstructured.Unstructured, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: ch.Name(), Namespace: "default", IsInstall: true}, caps)
	if err != nil {
		return nil, fmt.Errorf("%s: rendering chart %s: %w", source, ch.Name(), err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("%s: rendering chart %s: %w", source, ch.Name(), err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	var errs []error
	decode := func(name, body string) {
		got, err := apply.Decode(strings.NewReader(body), source+": "+name+" (rendered)")
		objs = append(objs, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, crd := range ch.CRDObjects() {
		decode(crd.Filename, string(crd.File.Data))
	}
	for _, n := range names {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "_") || !apply.IsManifest(base) || strings.TrimSpace(files[n]) == "" {
			continue
		}
		decode(n, files[n])
	}
	return objs, errors.Join(errs...)
}
