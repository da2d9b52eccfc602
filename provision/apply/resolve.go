package apply

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
)

// Mapping is where a kind lives on the server.
type Mapping struct {
	GVK        schema.GroupVersionKind
	Resource   string // plural resource name
	Namespaced bool
}

// GVR returns the mapping's group, version and resource.
func (m Mapping) GVR() schema.GroupVersionResource {
	return m.GVK.GroupVersion().WithResource(m.Resource)
}

// Resolver maps kinds to the versions a server serves. It is built from
// discovery data (NewResolver) and holds no connection.
type Resolver struct {
	// byKind lists every served (group, version) of a kind.
	byKind map[string][]Mapping
	// versions lists each group's versions in the server's priority order
	// (preferred first).
	versions map[string][]string
}

// NewResolver indexes discovery data as returned by
// discovery.ServerGroupsAndResources.
func NewResolver(groups []*metav1.APIGroup, lists []*metav1.APIResourceList) *Resolver {
	r := &Resolver{byKind: map[string][]Mapping{}, versions: map[string][]string{}}
	for _, g := range groups {
		var vs []string
		if g.PreferredVersion.Version != "" {
			vs = append(vs, g.PreferredVersion.Version)
		}
		for _, v := range g.Versions {
			if v.Version != g.PreferredVersion.Version {
				vs = append(vs, v.Version)
			}
		}
		r.versions[g.Name] = vs
	}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			if strings.Contains(res.Name, "/") {
				continue // subresource
			}
			r.add(Mapping{GVK: gv.WithKind(res.Kind), Resource: res.Name, Namespaced: res.Namespaced})
		}
	}
	return r
}

func (r *Resolver) add(m Mapping) {
	for _, have := range r.byKind[m.GVK.Kind] {
		if have.GVK == m.GVK {
			return
		}
	}
	r.byKind[m.GVK.Kind] = append(r.byKind[m.GVK.Kind], m)
	if !contains(r.versions[m.GVK.Group], m.GVK.Version) {
		r.versions[m.GVK.Group] = append(r.versions[m.GVK.Group], m.GVK.Version)
		sort.SliceStable(r.versions[m.GVK.Group], func(i, j int) bool {
			return version.CompareKubeAwareVersionStrings(r.versions[m.GVK.Group][i], r.versions[m.GVK.Group][j]) > 0
		})
	}
}

// AddCRD teaches the resolver the kinds a CustomResourceDefinition in the
// same apply set will create, so objects of that kind can be checked before
// the CRD reaches the server. crd is the CRD's unstructured content.
func (r *Resolver) AddCRD(crd map[string]any) {
	spec, _ := crd["spec"].(map[string]any)
	group, _ := spec["group"].(string)
	names, _ := spec["names"].(map[string]any)
	kind, _ := names["kind"].(string)
	plural, _ := names["plural"].(string)
	scope, _ := spec["scope"].(string)
	versions, _ := spec["versions"].([]any)
	if group == "" || kind == "" || plural == "" {
		return
	}
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		if served, _ := vm["served"].(bool); !served || name == "" {
			continue
		}
		r.add(Mapping{GVK: schema.GroupVersionKind{Group: group, Version: name, Kind: kind}, Resource: plural, Namespaced: scope != "Cluster"})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Resolve returns where an object of kind with apiVersion lives.
//
// An empty apiVersion is resolved to the server's preferred stable version
// of the kind; apiVersion may also name just a group ("events.k8s.io") to
// stay versionless within it. A kind served only as alpha/beta, and an
// explicit alpha/beta apiVersion, are refused unless allowBeta.
func (r *Resolver) Resolve(apiVersion, kind string, allowBeta bool) (Mapping, error) {
	if kind == "" {
		return Mapping{}, fmt.Errorf("%w: no kind", ErrInvalidObject)
	}
	if apiVersion != "" && (strings.Contains(apiVersion, "/") || isVersion(apiVersion)) {
		return r.resolveExplicit(apiVersion, kind, allowBeta)
	}
	cands := r.byKind[kind]
	groupOnly := apiVersion != ""
	if groupOnly {
		var in []Mapping
		for _, c := range cands {
			if c.GVK.Group == apiVersion {
				in = append(in, c)
			}
		}
		cands = in
	}
	if len(cands) == 0 {
		where := ""
		if groupOnly {
			where = " in group " + apiVersion
		}
		return Mapping{}, fmt.Errorf("%w: the server serves no kind %q%s; check the spelling, or install its CustomResourceDefinition first (in the same apply set is fine)%s",
			ErrUnknownKind, kind, where, r.similar(kind))
	}
	var groups []string
	for _, c := range cands {
		if !contains(groups, c.GVK.Group) {
			groups = append(groups, c.GVK.Group)
		}
	}
	if len(groups) > 1 {
		var opts []string
		for _, g := range groups {
			if m, err := r.pick(g, kind, allowBeta); err == nil {
				opts = append(opts, "apiVersion: "+m.GVK.GroupVersion().String())
			} else {
				opts = append(opts, "apiVersion: "+groupLabel(g))
			}
		}
		example := ""
		for _, g := range groups {
			if g != "" {
				example = g
				break
			}
		}
		return Mapping{}, fmt.Errorf("%w: kind %s is served by %d groups (%s); set one of: %s, or name only the group (e.g. apiVersion: %s) to stay versionless",
			ErrAmbiguousKind, kind, len(groups), strings.Join(labels(groups), ", "), strings.Join(opts, " | "), example)
	}
	return r.pick(groups[0], kind, allowBeta)
}

func groupLabel(g string) string {
	if g == "" {
		return "v1"
	}
	return g
}

func labels(groups []string) []string {
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = groupLabel(g)
		if g == "" {
			out[i] = "core"
		}
	}
	return out
}

// pick chooses the version of kind in group: the group's preferred version
// when it is stable and serves the kind, else the first stable version in
// priority order, else (with allowBeta) the first beta, then alpha.
func (r *Resolver) pick(group, kind string, allowBeta bool) (Mapping, error) {
	served := map[string]Mapping{}
	for _, c := range r.byKind[kind] {
		if c.GVK.Group == group {
			served[c.GVK.Version] = c
		}
	}
	var unstable []string
	for _, want := range []Stability{Stable, Beta, Alpha} {
		for _, v := range r.versions[group] {
			m, ok := served[v]
			if !ok || VersionStability(v) != want {
				continue
			}
			if want == Stable || allowBeta {
				return m, nil
			}
			unstable = append(unstable, m.GVK.GroupVersion().String())
		}
	}
	if len(unstable) == 0 {
		return Mapping{}, fmt.Errorf("%w: the server does not serve kind %s in group %q", ErrUnknownKind, kind, group)
	}
	return Mapping{}, fmt.Errorf("%w: the server serves kind %s only as %s (%s); k2 applies only stable APIs: set --allow-beta (k2 build/apply/deploy) to accept it",
		ErrBetaOnly, kind, strings.Join(unstable, ", "), VersionStability(versionOf(unstable[0])))
}

func versionOf(gv string) string {
	if i := strings.LastIndex(gv, "/"); i >= 0 {
		return gv[i+1:]
	}
	return gv
}

func (r *Resolver) resolveExplicit(apiVersion, kind string, allowBeta bool) (Mapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return Mapping{}, fmt.Errorf("%w: apiVersion %q: %w", ErrInvalidObject, apiVersion, err)
	}
	gvk := gv.WithKind(kind)
	if st := VersionStability(gv.Version); st != Stable && !allowBeta {
		return Mapping{}, fmt.Errorf("%w: %s %s is %s; %s", ErrUnstableAPI, apiVersion, kind, st, r.suggest(gvk))
	}
	for _, c := range r.byKind[kind] {
		if c.GVK == gvk {
			return c, nil
		}
	}
	hint := "check the spelling, or install its CustomResourceDefinition first"
	if k, ok := LookupKnownAPI(gvk); ok {
		hint = k.advice()
	} else if m, err := r.pick(gv.Group, kind, false); err == nil {
		hint = "use apiVersion: " + m.GVK.GroupVersion().String() + ", or omit apiVersion"
	}
	return Mapping{}, fmt.Errorf("%w: the server does not serve %s %s; %s", ErrUnknownKind, apiVersion, kind, hint)
}

// suggest tells the user what to use instead of an unstable gvk.
func (r *Resolver) suggest(gvk schema.GroupVersionKind) string {
	if k, ok := LookupKnownAPI(gvk); ok && k.Replacement != "" {
		return k.advice()
	}
	if m, err := r.pick(gvk.Group, gvk.Kind, false); err == nil {
		return "use apiVersion: " + m.GVK.GroupVersion().String() + " (stable), or omit apiVersion to get it"
	}
	if k, ok := LookupKnownAPI(gvk); ok {
		return k.advice()
	}
	return "there is no stable version of it on this server; set --allow-beta to accept it"
}

func (k KnownAPI) advice() string {
	var s string
	if k.Replacement != "" {
		s = "use apiVersion: " + k.Replacement + " (stable), or omit apiVersion to get it"
	} else {
		s = "it has no stable replacement"
		if k.Note != "" {
			s += "; " + k.Note
		}
	}
	if k.RemovedIn != "" {
		s += fmt.Sprintf(" (%s was removed in Kubernetes %s)", k.APIVersion, k.RemovedIn)
	}
	return s
}

// similar suggests kinds that differ only in case.
func (r *Resolver) similar(kind string) string {
	if kind == "App" {
		return "; App (k2.dev) is served by k2 server, which installs its CustomResourceDefinition at start"
	}
	for k := range r.byKind {
		if strings.EqualFold(k, kind) && k != kind {
			return fmt.Sprintf("; did you mean %s?", k)
		}
	}
	return ""
}
