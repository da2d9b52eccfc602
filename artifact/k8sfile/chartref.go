package k8sfile

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ChartKind says where an INSTALL chart comes from.
type ChartKind int

const (
	// ChartOCI is oci://host/path/chart[:version]: a chart in an OCI registry.
	ChartOCI ChartKind = iota + 1
	// ChartRepoURL is <http(s)-repo-url>#<chart>: a chart in a classic
	// Helm repository (index.yaml) at that URL.
	ChartRepoURL
	// ChartAlias is helm/<repo-alias>/<chart>: a chart in a Helm repository
	// registered with `k2 repo add <alias> <url>`.
	ChartAlias
)

func (k ChartKind) String() string {
	switch k {
	case ChartOCI:
		return "oci"
	case ChartRepoURL:
		return "repo-url"
	case ChartAlias:
		return "alias"
	}
	return fmt.Sprintf("ChartKind(%d)", int(k))
}

// MarshalText makes the kind readable in JSON.
func (k ChartKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// ChartRef is a classified INSTALL chart reference.
type ChartRef struct {
	Kind ChartKind
	// Ref is the reference as written (after ARG expansion).
	Ref string
	// OCI: the repository without the oci:// scheme and without tag or
	// digest ("registry.local:5000/charts/redis").
	Repository string `json:",omitempty"`
	// OCI: the tag (a chart version) or "sha256:…" digest given in the
	// reference, if any.
	Tag    string `json:",omitempty"`
	Digest string `json:",omitempty"`
	// RepoURL: the repository URL, before "#".
	RepoURL string `json:",omitempty"`
	// Alias: the repository alias.
	Alias string `json:",omitempty"`
	// Chart is the chart's name: the last path element for OCI, the part
	// after "#" for RepoURL, the last element for Alias.
	Chart string
}

var chartNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// chartForms is the hint listing the accepted chart references.
const chartForms = "use oci://<host>/<path>/<chart>, <http(s)-repo-url>#<chart>, or helm/<repo-alias>/<chart> (after k2 repo add <repo-alias> <url>)"

// ParseChartRef classifies an INSTALL chart reference. The error's text
// names the problem; [chartForms] lists the accepted forms.
func ParseChartRef(s string) (ChartRef, error) {
	ref := ChartRef{Ref: s}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "oci://"):
		ref.Kind = ChartOCI
		rest := s[len("oci://"):]
		if err := ValidateRef(rest); err != nil {
			return ChartRef{}, fmt.Errorf("chart %q: %w", s, err)
		}
		if at := strings.IndexByte(rest, '@'); at >= 0 {
			ref.Digest = rest[at+1:]
			rest = rest[:at]
		}
		if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
			ref.Tag = rest[i+1:]
			rest = rest[:i]
		}
		slash := strings.IndexByte(rest, '/')
		if slash < 0 {
			return ChartRef{}, fmt.Errorf("chart %q has no registry host: oci://<host>/<path>/<chart>", s)
		}
		ref.Repository = rest
		ref.Chart = rest[strings.LastIndexByte(rest, '/')+1:]
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		ref.Kind = ChartRepoURL
		hash := strings.LastIndexByte(s, '#')
		if hash < 0 {
			return ChartRef{}, fmt.Errorf("chart %q names a repository but no chart: add #<chart>", s)
		}
		ref.RepoURL, ref.Chart = s[:hash], s[hash+1:]
		u, err := url.Parse(ref.RepoURL)
		if err != nil || u.Host == "" {
			return ChartRef{}, fmt.Errorf("chart %q: %q is not a valid repository URL", s, ref.RepoURL)
		}
		if !chartNameRE.MatchString(ref.Chart) {
			return ChartRef{}, fmt.Errorf("chart %q: %q is not a chart name", s, ref.Chart)
		}
	case strings.HasPrefix(s, "helm/"):
		ref.Kind = ChartAlias
		parts := strings.Split(s, "/")
		if len(parts) != 3 {
			return ChartRef{}, fmt.Errorf("chart %q: the short form is helm/<repo-alias>/<chart>", s)
		}
		ref.Alias, ref.Chart = parts[1], parts[2]
		if !chartNameRE.MatchString(ref.Alias) {
			return ChartRef{}, fmt.Errorf("chart %q: %q is not a repository alias", s, ref.Alias)
		}
		if !chartNameRE.MatchString(ref.Chart) {
			return ChartRef{}, fmt.Errorf("chart %q: %q is not a chart name", s, ref.Chart)
		}
	default:
		return ChartRef{}, fmt.Errorf("%q is not a chart reference", s)
	}
	return ref, nil
}

// ChartRef classifies i.Chart, which [Parse] has validated.
func (i *Install) ChartRef() ChartRef {
	ref, _ := ParseChartRef(i.Chart)
	return ref
}
