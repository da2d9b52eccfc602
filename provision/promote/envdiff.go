package promote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"k2.dev/k2/artifact"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// EnvSide is one environment as 'k2 env diff' compares it.
type EnvSide struct {
	Env      string `json:"env"`
	Provider string `json:"provider"`
	Registry string `json:"registry,omitempty"`
	// Deployment is its current deployment ("" if not deployed).
	Deployment string            `json:"deployment,omitempty"`
	Ref        string            `json:"ref,omitempty"`
	Digest     string            `json:"digest,omitempty"`
	ValuesHash string            `json:"valuesHash,omitempty"`
	Values     map[string]string `json:"values,omitempty"`
	Kubernetes string            `json:"kubernetes,omitempty"`
	// Machines counts machines by pool ("worker": 2).
	Machines map[string]int `json:"machines"`
	// Layers maps each layer's name to its digest, in manifest order
	// (LayerOrder), vendored images included.
	Layers     map[string]string `json:"layers,omitempty"`
	LayerOrder []string          `json:"-"`
	Warnings   []string          `json:"warnings,omitempty"`
}

// DiffRow is one compared field.
type DiffRow struct {
	Field string `json:"field"`
	A     string `json:"a"`
	B     string `json:"b"`
	Same  bool   `json:"same"`
}

// EnvDiff is what 'k2 env diff A B' reports.
type EnvDiff struct {
	A    EnvSide   `json:"a"`
	B    EnvSide   `json:"b"`
	Rows []DiffRow `json:"rows"`
	// Same: every row is the same.
	Same bool `json:"same"`
}

// DiffEnvs compares environments a and b side by side: the artifact digest
// each runs, its values (hash and each value), machines per pool, the
// Kubernetes version and the digest of every layer. Artifacts are read
// from the local store (pulled by digest when missing; if that fails the
// side says so in Warnings).
func DiffEnvs(ctx context.Context, s *state.Store, open func(ctx context.Context, ref string) (*artifact.Artifact, error), a, b string) (*EnvDiff, error) {
	sa, err := envSide(ctx, s, open, a)
	if err != nil {
		return nil, err
	}
	sb, err := envSide(ctx, s, open, b)
	if err != nil {
		return nil, err
	}
	d := &EnvDiff{A: *sa, B: *sb, Same: true}
	add := func(field, va, vb string) {
		r := DiffRow{Field: field, A: va, B: vb, Same: va == vb}
		d.Same = d.Same && r.Same
		d.Rows = append(d.Rows, r)
	}
	add("provider", sa.Provider, sb.Provider)
	add("registry", sa.Registry, sb.Registry)
	add("artifact", sa.Digest, sb.Digest)
	add("values", sa.ValuesHash, sb.ValuesHash)
	for _, k := range union(sa.Values, sb.Values) {
		add("value "+k, sa.Values[k], sb.Values[k])
	}
	add("kubernetes", sa.Kubernetes, sb.Kubernetes)
	pools := map[string]bool{}
	for p := range sa.Machines {
		pools[p] = true
	}
	for p := range sb.Machines {
		pools[p] = true
	}
	for _, p := range sortedSet(pools) {
		add("machines "+p, count(sa.Machines, p), count(sb.Machines, p))
	}
	seen := map[string]bool{}
	for _, l := range append(append([]string{}, sa.LayerOrder...), sb.LayerOrder...) {
		if seen[l] {
			continue
		}
		seen[l] = true
		add("layer "+l, sa.Layers[l], sb.Layers[l])
	}
	return d, nil
}

func envSide(ctx context.Context, s *state.Store, open func(ctx context.Context, ref string) (*artifact.Artifact, error), name string) (*EnvSide, error) {
	e, err := s.GetEnv(ctx, name)
	if err != nil {
		return nil, engine.UserError(err)
	}
	side := &EnvSide{Env: name, Provider: e.Provider, Registry: e.Registry, Machines: map[string]int{}}
	ms, err := s.ListMachines(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		side.Machines[m.Pool]++
	}
	cur, _, err := engine.Current(ctx, s, name)
	if errors.Is(err, engine.ErrNotDeployed) {
		side.Warnings = append(side.Warnings, "not deployed")
		return side, nil
	}
	if err != nil {
		return nil, err
	}
	side.Deployment, side.Digest, side.ValuesHash, side.Values = cur.ID, cur.ArtifactDigest, cur.ValuesHash, cur.Values
	side.Ref = artifact.PinnedRef(cur.ArtifactRef, cur.ArtifactDigest)
	a, err := open(ctx, side.Ref)
	if err != nil {
		side.Warnings = append(side.Warnings, fmt.Sprintf("cannot read its artifact %s: %v", side.Ref, err))
		return side, nil
	}
	side.Kubernetes = a.Config.Kubernetes
	side.Layers = map[string]string{}
	for i, l := range a.Manifest.Layers {
		n := l.Annotations[ocispec.AnnotationTitle]
		if n == "" {
			n = "#" + strconv.Itoa(i)
		}
		side.Layers[n] = l.Digest.String()
		side.LayerOrder = append(side.LayerOrder, n)
	}
	return side, nil
}

func union(a, b map[string]string) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return sortedSet(keys)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func count(m map[string]int, k string) string {
	if n, ok := m[k]; ok {
		return strconv.Itoa(n)
	}
	return ""
}
