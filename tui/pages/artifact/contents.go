package artifact

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	k2artifact "k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/tui/common"
)

// labelWidth is the width of the label column of the contents.
const labelWidth = 12

// maxFieldLines bounds each field so the contents fit 80×24.
const maxFieldLines = 2

// Contents renders what artifact a holds (what `k2 inspect` shows, in
// short) with its signature status, at width.
func Contents(c *common.Common, a *k2artifact.Artifact, sig sign.Summary, width int) string {
	s := c.Styles
	sum := a.Summarize()
	var b strings.Builder
	b.WriteString(s.Heading.Render("Artifact "+a.Ref) + "\n\n")
	field := func(label string, values ...string) {
		if len(values) == 0 {
			values = []string{s.Muted.Render("none")}
		}
		text := strings.Join(values, ", ")
		w := max(20, width-labelWidth)
		lines := strings.Split(ansi.Wordwrap(text, w, " ,"), "\n")
		if len(lines) > maxFieldLines { // see all of it with k2 inspect
			lines = lines[:maxFieldLines]
			lines[maxFieldLines-1] = ansi.Truncate(lines[maxFieldLines-1], w-2, "") + " …"
		}
		for i, l := range lines {
			lab := ""
			if i == 0 {
				lab = label
			}
			b.WriteString(s.Label.Render(fmt.Sprintf("%-*s", labelWidth, lab)) + l + "\n")
		}
	}
	field("Digest", sum.Digest)
	k8s := sum.Kubernetes
	if k8s == "" {
		k8s = "none (FROM scratch)"
	}
	field("Kubernetes", k8s)
	field("OS", OS(a.Config))
	field("Signature", signature(c, sig))
	var machines []string
	for _, m := range sum.Machines {
		machines = append(machines, m.Pool+" ×"+m.Count+size(m))
	}
	field("Machines", machines...)
	var apps []string
	for _, ap := range sum.Apps {
		x := ap.Name + " " + ap.Image
		if len(ap.Ports) > 0 {
			x += " port " + strings.Join(ap.Ports, ",")
		}
		if ap.Replicas != "" {
			x += " ×" + ap.Replicas
		}
		apps = append(apps, x)
	}
	field("Apps", apps...)
	var charts []string
	for _, ch := range sum.Charts {
		charts = append(charts, fmt.Sprintf("%s %s (release %s in %s)", ch.Chart, ch.Version, ch.Release, ch.Namespace))
	}
	field("Charts", charts...)
	var params []string
	for _, p := range sum.Args {
		if p.Default == nil {
			params = append(params, p.Name+" (required)")
		} else {
			params = append(params, p.Name+"="+quote(*p.Default))
		}
	}
	field("Params", params...)
	var images []string
	vendored := 0
	for _, im := range sum.Images {
		if im.Vendored {
			vendored++
			images = append(images, im.Ref+" (vendored, "+output.Bytes(im.Size)+")")
		} else {
			images = append(images, im.Ref)
		}
	}
	if len(images) > 0 {
		images[0] = fmt.Sprintf("%d of %d vendored: %s", vendored, len(images), images[0])
	}
	field("Images", images...)
	var layers []string
	for _, l := range sum.Layers {
		layers = append(layers, fmt.Sprintf("%s (%s)", l.Name, l.Kind))
	}
	field("Layers", layers...)
	field("Size", output.Bytes(sum.Size))
	return b.String()
}

func size(m k2artifact.MachineSpec) string {
	var parts []string
	for _, kv := range [][2]string{{"cpu", m.CPU}, {"memory", m.Memory}, {"disk", m.Disk}, {"arch", m.Arch}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// OS is the operating system the artifact's machines boot. Artifacts do
// not name one yet (the OS instruction is coming): the provider's default.
func OS(*k2artifact.Config) string { return "k2 (the default; the artifact names none)" }

func signature(c *common.Common, sig sign.Summary) string {
	switch sig.State {
	case sign.StateVerified:
		return c.Styles.OK.Render("✓ verified with " + sig.Key)
	case sign.StateSigned:
		return c.Styles.Warn.Render(fmt.Sprintf("signed (%d), not verified: give k2 install --key FILE to check it", sig.Signatures))
	case sign.StateUnsigned:
		return c.Styles.Warn.Render("not signed")
	case sign.StateInvalid:
		return c.Styles.Error.Render("✗ invalid: " + sig.Detail)
	}
	text := "unknown"
	if sig.Detail != "" {
		text += ": " + sig.Detail
	}
	return c.Styles.Warn.Render(text)
}

func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"'") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
