// Package output renders command results as text for people or JSON for scripts.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Format is an output format chosen with -o.
type Format string

// The formats every reporting command accepts.
const (
	Text Format = "text"
	JSON Format = "json"
)

// Parse validates an -o value.
func Parse(s string) (Format, error) {
	switch Format(strings.ToLower(s)) {
	case Text, "":
		return Text, nil
	case JSON:
		return JSON, nil
	}
	return "", fmt.Errorf("unknown output format %q; use -o text or -o json", s)
}

// Render writes v as indented JSON when f is JSON, otherwise calls text.
func Render(w io.Writer, f Format, v any, text func(w io.Writer) error) error {
	if f == JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return text(w)
}

// Table returns a tabwriter for aligned columns; call Flush when done.
func Table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// Bytes formats n bytes in the binary-suffix notation a K8sfile and
// Kubernetes use for sizes: a whole number where the largest unit n reaches,
// or the one below it, divides n exactly ("4Gi", "1536Mi"), else one decimal
// of the largest unit ("12.3Mi"); below 1Ki it is bytes ("512B"). It is the
// one size formatter of the tree.
func Bytes(n int64) string {
	if n < 0 {
		return "-" + Bytes(-n)
	}
	const units = "KMGTPE"
	if n < 1<<10 {
		return fmt.Sprintf("%dB", n)
	}
	exp := 0 // n >= 1 << (10 * (exp+1))
	for exp+1 < len(units) && n>>(10*(exp+2)) > 0 {
		exp++
	}
	unit := int64(1) << (10 * (exp + 1))
	switch {
	case n%unit == 0:
		return fmt.Sprintf("%d%ci", n/unit, units[exp])
	case exp > 0 && n%(unit>>10) == 0:
		return fmt.Sprintf("%d%ci", n/(unit>>10), units[exp-1])
	}
	return fmt.Sprintf("%.1f%ci", float64(n)/float64(unit), units[exp])
}
