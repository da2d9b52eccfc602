package engine

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes the plan for people (`k2 deploy --dry-run`); JSON is the
// Plan itself.
func (p *Plan) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("Plan for environment %s (provider %s)\n", p.Env, p.Provider)
	art := p.Artifact.Ref
	if p.Artifact.Digest != "" && !strings.HasSuffix(art, "@"+p.Artifact.Digest) {
		if art != "" {
			art += "@"
		}
		art += p.Artifact.Digest
	}
	if art == "" {
		art = "-"
	}
	ew.printf("Artifact:   %s\n", art)
	if p.Artifact.Kubernetes != "" {
		ew.printf("Kubernetes: %s\n", p.Artifact.Kubernetes)
	}
	if p.ForeignOS() {
		ew.printf("OS:         %s %s (its own Kubernetes; the provider starts the cluster)\n", p.Artifact.OS, p.Artifact.OSVersion)
	}
	switch {
	case p.Unverified:
		ew.printf("Bootstrap:  (provider capabilities not checked)\n")
	case p.Bootstrap != "":
		ew.printf("Bootstrap:  %s\n", p.Bootstrap)
	}

	if p.Datastore.Kind != "" {
		ew.printf("Datastore:  %s\n", p.Datastore.describe())
	}

	ew.printf("\nValues (%d):\n", len(p.Values))
	if len(p.Values) == 0 {
		ew.printf("  (none)\n")
	} else {
		t := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		for _, v := range p.Values {
			fmt.Fprintf(t, "  %s\t= %s\t(%s)\n", v.Name, quoteIfNeeded(v.Value), v.Source)
		}
		t.Flush()
	}

	ew.printf("\nMachines (%d):\n", len(p.Machines))
	t := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "  NAME\tPOOL\tROLE\tARCH\tSIZE\tREQUEST ID")
	for _, m := range p.Machines {
		arch := m.Arch
		if arch == "" {
			arch = "any"
		}
		size := sizeString(m.CPU, m.MemoryBytes, m.DiskBytes)
		if m.Class != "" {
			size += " → class " + m.Class
		}
		rid := m.RequestID
		if rid == "" {
			rid = "-"
		}
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Pool, m.Role, arch, size, rid)
	}
	t.Flush()

	ew.printf("\nLayers (%d), applied in order:\n", len(p.Layers))
	t = tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	for i, l := range p.Layers {
		objs := fmt.Sprintf("%d objects", l.Objects)
		if l.Objects == 1 {
			objs = "1 object"
		}
		line := fmt.Sprintf("  %d.\t%s\t%s\t%s", i+1, l.Name, l.Kind, objs)
		if l.From != "" {
			line += "\tfrom " + l.From
		}
		fmt.Fprintln(t, line)
	}
	t.Flush()

	if len(p.Apps) > 0 {
		ew.printf("\nApps (%d):\n", len(p.Apps))
		t = tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		for _, a := range p.Apps {
			rep := a.Replicas
			if rep == "" {
				rep = "1"
			}
			ports := strings.Join(a.Ports, ",")
			if ports == "" {
				ports = "-"
			}
			fmt.Fprintf(t, "  %s\t%s\treplicas=%s\tports=%s\n", a.Name, a.Image, rep, ports)
		}
		t.Flush()
	}
	if len(p.Warnings) > 0 {
		ew.printf("\nWarnings:\n")
		for _, w := range p.Warnings {
			ew.printf("  - %s\n", w)
		}
	}
	return ew.err
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"'") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// errWriter keeps the first write error so WriteText can return it once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, nil
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

// describe says where the control plane keeps its objects, for people.
func (d PlanDatastore) describe() string {
	switch d.Kind {
	case DatastoreSQLite:
		return "SQLite in the server"
	case DatastoreEtcd:
		if d.Servers == 1 {
			return "etcd embedded in the server (more servers can join)"
		}
		return fmt.Sprintf("etcd embedded in each of %d servers (survives the loss of %d)", d.Servers, (d.Servers-1)/2)
	}
	return fmt.Sprintf("external %s, shared by %d server(s)", redactEndpoint(d.Endpoint), d.Servers)
}

// redactEndpoint hides a password in a datastore endpoint.
func redactEndpoint(ep string) string {
	scheme, rest, ok := strings.Cut(ep, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return ep
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return ep
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
