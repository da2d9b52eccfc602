package k8sfile

import (
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Value checks shared by the parser (on literal values and on templates
// expanded with ARG defaults) and by [File.Resolve] (at deploy time). Each
// returns an error whose text completes "<field> …", e.g. `"two" is not an
// integer`.

var (
	// OCI distribution reference grammar, as in the distribution spec.
	domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domainRE        = regexp.MustCompile(`^` + domainComponent + `(?:\.` + domainComponent + `)*(?::[0-9]+)?$`)
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	sha256RE        = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	dns1123LabelRE  = regexp.MustCompile(`^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$`)
	envNameRE       = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
)

// ValidateRef checks an artifact or image reference:
// [host[:port]/]path[:tag][@sha256:<64 hex>].
func ValidateRef(ref string) error {
	if ref == "" {
		return errors.New("reference is empty")
	}
	name := ref
	if at := strings.IndexByte(name, '@'); at >= 0 {
		digest := name[at+1:]
		name = name[:at]
		if !sha256RE.MatchString(digest) {
			return fmt.Errorf("%q has a bad digest %q: it must be sha256: and 64 lowercase hex digits", ref, digest)
		}
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag := name[i+1:]
		name = name[:i]
		if !tagRE.MatchString(tag) {
			return fmt.Errorf("%q has a bad tag %q: up to 128 letters, digits, _ . and -, not starting with . or -", ref, tag)
		}
	}
	if len(name) > 255 {
		return fmt.Errorf("%q: the repository name is longer than 255 characters", ref)
	}
	parts := strings.Split(name, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if !domainRE.MatchString(parts[0]) {
			return fmt.Errorf("%q has a bad registry host %q", ref, parts[0])
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		if !pathComponentRE.MatchString(p) {
			if strings.ToLower(p) != p {
				return fmt.Errorf("%q: repository names must be lowercase (%q)", ref, p)
			}
			return fmt.Errorf("%q has a bad path component %q: lowercase letters and digits, separated by . _ __ or -", ref, p)
		}
	}
	return nil
}

// unpinned reports whether a valid image reference has neither a digest nor
// a tag other than latest.
func unpinned(ref string) bool {
	if strings.Contains(ref, "@") {
		return false
	}
	i := strings.LastIndexByte(ref, ':')
	return i <= strings.LastIndexByte(ref, '/') || ref[i+1:] == "latest"
}

// validLabel reports whether s is a DNS-1123 label: lowercase letters,
// digits and '-', starting and ending with a letter or digit, ≤ 63.
func validLabel(s string) bool { return len(s) <= 63 && dns1123LabelRE.MatchString(s) }

func checkLabel(s string) error {
	if validLabel(s) {
		return nil
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	return fmt.Errorf("%q is not a DNS-1123 label (lowercase letters, digits and -, starting and ending with a letter or digit)", s)
}

// toLabel makes a DNS-1123 label of s: lower case, runs of other characters
// become "-", trimmed to 63. It returns "" if nothing is left.
func toLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	return out
}

// knownExts are stripped from ADD paths to name the layer.
var knownExts = []string{".tar.gz", ".tgz", ".tar", ".yaml", ".yml", ".json"}

// addLayerName derives ADD's default layer name from its path.
func addLayerName(p string) string {
	base := path.Base(strings.ReplaceAll(p, "\\", "/"))
	if base == "." || base == ".." || base == "/" {
		return ""
	}
	for _, ext := range knownExts {
		if len(base) > len(ext) && strings.EqualFold(base[len(base)-len(ext):], ext) {
			base = base[:len(base)-len(ext)]
			break
		}
	}
	return toLabel(base)
}

func checkCount(s string) error {
	if strings.HasPrefix(s, "-") && allDigits(s[1:]) {
		return fmt.Errorf("%q is negative", s)
	}
	if !allDigits(s) {
		return fmt.Errorf("%q is not a whole number", s)
	}
	if _, err := strconv.ParseInt(s, 10, 32); err != nil {
		return fmt.Errorf("%s is too large", s)
	}
	return nil
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkPorts checks a port= value: one port or several separated by commas.
func checkPorts(s string) error {
	for p := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(p)
		if err != nil || !allDigits(p) {
			if allDigits(p) {
				return fmt.Errorf("%s is outside 1–65535", p)
			}
			return fmt.Errorf("%q is not a port number", p)
		}
		if n < 1 || n > 65535 {
			return fmt.Errorf("%d is outside 1–65535", n)
		}
	}
	return nil
}

// Archs are the machine architectures MACHINES arch= accepts.
var Archs = []string{"amd64", "arm64"}

func checkArch(s string) error {
	for _, a := range Archs {
		if s == a {
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(Archs, ", "))
}

// Datastores the control-plane pool may name besides an endpoint URL.
const (
	DatastoreSQLite = "sqlite"
	DatastoreEtcd   = "etcd"
)

// checkDatastore checks datastore=: sqlite, etcd, or an endpoint whose
// scheme k2 server's --datastore-endpoint takes; empty (from an ARG) is the
// default.
func checkDatastore(s string) error {
	if s == "" || s == DatastoreSQLite || s == DatastoreEtcd {
		return nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if ok && rest != "" {
		switch scheme {
		case "etcd", "etcds", "http", "https", "postgres", "postgresql", "mysql":
			return nil
		}
	}
	return fmt.Errorf("%q is neither sqlite, etcd nor an etcd://, postgres:// or mysql:// endpoint", s)
}

// Quantities: a decimal number with an optional suffix, as Kubernetes writes
// resource quantities: binary Ki Mi Gi Ti Pi Ei, decimal k M G T P E, and m
// (thousandths, for CPU).
var quantityRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$`)

var quantityFactor = map[string]float64{
	"": 1, "m": 1e-3,
	"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
}

// ParseQuantity parses a resource quantity such as 4Gi, 500Mi, 20G, 1.5, or
// 500m and returns its value (bytes for memory and disk, cores for CPU).
func ParseQuantity(s string) (float64, error) {
	m := quantityRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a quantity (a number with an optional unit: Ki Mi Gi Ti Pi Ei, k M G T P E, or m)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a quantity", s)
	}
	v *= quantityFactor[m[2]]
	if math.IsInf(v, 0) || v > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v, nil
}

// ParseBytes parses a memory or disk quantity (4Gi, 500Mi, 20G) into bytes,
// rounding up a fraction of a byte.
func ParseBytes(s string) (int64, error) {
	v, err := ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	return int64(math.Ceil(v)), nil
}

// ParseMilliCPU parses a CPU quantity (2, 0.5, 500m) into thousandths of a core.
func ParseMilliCPU(s string) (int64, error) {
	v, err := ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	return int64(math.Ceil(v * 1000)), nil
}

func checkCPU(s string) error {
	m, err := ParseMilliCPU(s)
	if err != nil {
		return err
	}
	if m <= 0 {
		return fmt.Errorf("%q is not a positive number of cores", s)
	}
	return nil
}

// checkSize checks a memory or disk size: a quantity of at least 1Mi, since
// a bare "4" (4 bytes) is almost certainly a missing unit.
func checkSize(s string) error {
	b, err := ParseBytes(s)
	if err != nil {
		return err
	}
	if b < 1<<20 {
		return fmt.Errorf("%q is less than 1Mi (a bare number is bytes; write 4Gi for 4 GiB)", s)
	}
	return nil
}
