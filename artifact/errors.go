package artifact

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound means a reference is not in the local store.
var ErrNotFound = errors.New("not found in the local store")

// BetaError reports objects with an alpha or beta apiVersion, found at build
// without --allow-beta. Each entry names the file or chart and the object.
type BetaError struct {
	Objects []BetaObject
}

// BetaObject is one object with a pre-release apiVersion.
type BetaObject struct {
	Layer  string // layer name
	Source string // file in the layer, or "chart <name>[/template]"
	From   string // base reference, when inherited
	Object Object
}

func (e *BetaError) Error() string {
	var b strings.Builder
	for i, o := range e.Objects {
		if i == 10 {
			fmt.Fprintf(&b, "\n... and %d more", len(e.Objects)-i)
			break
		}
		if i > 0 {
			b.WriteString("\n")
		}
		where := o.Source
		if o.From != "" {
			where += " (inherited from " + o.From + ")"
		}
		name := o.Object.Name
		if name == "" {
			name = "<unnamed>"
		}
		fmt.Fprintf(&b, "layer %s: %s: %s %s uses pre-release apiVersion %s", o.Layer, where, o.Object.Kind, name, o.Object.APIVersion)
	}
	return b.String()
}

// IsPreRelease reports whether an apiVersion's version part is alpha or
// beta ("batch/v2alpha1", "v1beta1"); the group is not considered.
func IsPreRelease(apiVersion string) bool {
	v := apiVersion[strings.LastIndex(apiVersion, "/")+1:]
	return strings.Contains(v, "alpha") || strings.Contains(v, "beta")
}
