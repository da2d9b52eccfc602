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

// Bytes formats n bytes as "512 B", "12.3 MiB" and so on.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
