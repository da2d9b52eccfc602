package artifact

import (
	"sort"
)

// Summary is what k2 inspect shows: a stable JSON shape.
type Summary struct {
	Ref          string            `json:"ref"`
	Digest       string            `json:"digest"`
	ArtifactType string            `json:"artifactType"`
	Size         int64             `json:"size"` // manifest + config + layers, bytes
	Kubernetes   string            `json:"kubernetes,omitempty"`
	OS           OSSpec            `json:"os"`
	AllowBeta    bool              `json:"allowBeta"`
	Args         []ArgSpec         `json:"args"`
	Machines     []MachineSpec     `json:"machines"`
	Apps         []AppSpec         `json:"apps"`
	Charts       []ChartSummary    `json:"charts"`
	APIKinds     []APIKind         `json:"apiKinds"`
	Base         []BaseRef         `json:"base"`
	Layers       []LayerSummary    `json:"layers"`
	Images       []ImageSummary    `json:"images"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// ChartSummary is one chart layer.
type ChartSummary struct {
	Layer     string `json:"layer"`
	Chart     string `json:"chart"`
	Version   string `json:"version"`
	Release   string `json:"release"`
	Namespace string `json:"namespace"`
	Source    string `json:"source"`
}

// APIKind counts the objects of one apiVersion and kind; APIVersion is empty
// for objects resolved at deploy.
type APIKind struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Count      int    `json:"count"`
}

// LayerSummary is one layer.
type LayerSummary struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Digest  string `json:"digest"`
	Size    int64  `json:"size"`
	From    string `json:"from,omitempty"`
	Objects int    `json:"objects"`
}

// ImageSummary is one container image the workloads reference.
type ImageSummary struct {
	Ref      string   `json:"ref"`
	Vendored bool     `json:"vendored"`
	Digest   string   `json:"digest,omitempty"`  // image manifest digest, when vendored
	Size     int64    `json:"size,omitempty"`    // archive layer size, when vendored
	Archive  string   `json:"archive,omitempty"` // archive layer digest, when vendored
	Sources  []string `json:"sources"`
	From     string   `json:"from,omitempty"`
}

// Summarize describes a for k2 inspect.
func (a *Artifact) Summarize() Summary {
	c := a.Config
	s := Summary{
		Ref: a.Ref, Digest: a.Descriptor.Digest.String(), ArtifactType: a.Manifest.ArtifactType,
		Size:       a.Descriptor.Size + a.Manifest.Config.Size,
		Kubernetes: c.Kubernetes, AllowBeta: c.AllowBeta, OS: OSSpec{Name: c.OSName()},
		Args: nonNil(c.Args), Machines: nonNil(c.Machines), Apps: nonNil(c.Apps), Base: nonNil(c.Base),
		Labels: c.Labels, Charts: []ChartSummary{}, Layers: []LayerSummary{},
	}
	if c.OS != nil {
		s.OS = *c.OS
	}
	kinds := map[[2]string]int{}
	for i, l := range c.Layers {
		s.Size += a.Manifest.Layers[i].Size
		s.Layers = append(s.Layers, LayerSummary{Name: l.Name, Kind: l.Kind, Digest: l.Digest, Size: l.Size,
			From: l.From, Objects: len(l.Objects)})
		if l.Chart != nil {
			s.Charts = append(s.Charts, ChartSummary{Layer: l.Name, Chart: l.Chart.Name, Version: l.Chart.Version,
				Release: l.Chart.Release, Namespace: l.Chart.Namespace, Source: l.Source})
		}
		for _, o := range l.Objects {
			kinds[[2]string{o.APIVersion, o.Kind}]++
		}
	}
	s.Images = []ImageSummary{}
	for _, im := range c.Images {
		is := ImageSummary{Ref: im.Ref, Vendored: im.Vendored(), Digest: im.Digest, Sources: nonNil(im.Sources), From: im.From}
		if im.Archive != nil {
			is.Size, is.Archive = im.Archive.Size, im.Archive.Digest
			s.Size += im.Archive.Size
		}
		s.Images = append(s.Images, is)
	}
	s.APIKinds = []APIKind{}
	for k, n := range kinds {
		s.APIKinds = append(s.APIKinds, APIKind{APIVersion: k[0], Kind: k[1], Count: n})
	}
	sort.Slice(s.APIKinds, func(i, j int) bool {
		if s.APIKinds[i].Kind != s.APIKinds[j].Kind {
			return s.APIKinds[i].Kind < s.APIKinds[j].Kind
		}
		return s.APIKinds[i].APIVersion < s.APIKinds[j].APIVersion
	})
	return s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
