package app

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrInvalid is wrapped by every spec validation error.
var ErrInvalid = errors.New("invalid App")

// Validate checks a spec, reporting every problem at once.
func Validate(s *Spec) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(s.Image) == "" {
		bad("spec.image is required")
	}
	seenPort := map[string]bool{}
	for i, p := range s.Ports {
		n, proto, err := p.Parse()
		if err != nil {
			bad("spec.ports[%d]: %v", i, err)
			continue
		}
		k := fmt.Sprintf("%d/%s", n, proto)
		if seenPort[k] {
			bad("spec.ports[%d]: %s listed twice", i, k)
		}
		seenPort[k] = true
	}
	if s.Replicas != nil && *s.Replicas < 0 {
		bad("spec.replicas: must be 0 or more")
	}
	if a := s.Autoscale; a != nil {
		if a.Min < 1 || a.Max < a.Min {
			bad("spec.autoscale: want 1 <= min <= max, got min=%d max=%d", a.Min, a.Max)
		}
		if a.CPU < 0 || a.CPU > 1000 {
			bad("spec.autoscale.cpu: want a percentage 1-1000, got %d", a.CPU)
		}
	}
	seenEnv := map[string]bool{}
	for i, e := range s.Env {
		if msgs := validation.IsEnvVarName(e.Name); len(msgs) > 0 {
			bad("spec.env[%d]: name %q: %s", i, e.Name, strings.Join(msgs, "; "))
		}
		if seenEnv[e.Name] {
			bad("spec.env[%d]: %s set twice", i, e.Name)
		}
		seenEnv[e.Name] = true
	}
	if r := s.Resources; r != nil {
		for field, q := range map[string]string{"cpu": r.CPU, "memory": r.Memory} {
			if q == "" {
				continue
			}
			if _, err := resource.ParseQuantity(q); err != nil {
				bad("spec.resources.%s: %q is not a quantity such as 250m or 256Mi", field, q)
			}
		}
	}
	if v := s.Volume; v != nil {
		if !strings.HasPrefix(v.Path, "/") {
			bad("spec.volume.path: want an absolute path, got %q", v.Path)
		}
		if v.Size != "" {
			if _, err := resource.ParseQuantity(v.Size); err != nil {
				bad("spec.volume.size: %q is not a quantity such as 10Gi", v.Size)
			}
		}
	}
	if x := s.Expose; x != nil {
		if len(s.Ports) == 0 && x.Port == 0 {
			bad("spec.expose: the App has no ports to expose; add spec.ports")
		}
		if msgs := validation.IsDNS1123Subdomain(x.Host); x.Host != "" && len(msgs) > 0 {
			bad("spec.expose.host: %q: %s", x.Host, strings.Join(msgs, "; "))
		}
		if x.Host == "" {
			bad("spec.expose.host is required")
		}
		if x.Path != "" && !strings.HasPrefix(x.Path, "/") {
			bad("spec.expose.path: want a path starting with /, got %q", x.Path)
		}
	}
	if d := s.Disruption; d != nil && (d.MinAvailable == nil) == (d.MaxUnavailable == nil) {
		bad("spec.disruption: set exactly one of minAvailable and maxUnavailable")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}
