package k8sfile

import "strings"

// OS names the operating system the artifact's machines boot.
const (
	// OSK2 is k2 OS (docs/os.md): k2 itself is the machines' init. The
	// default when a K8sfile has no OS line.
	OSK2 = "k2"
	// OSTalos is Talos Linux at a given version (version=), for sites
	// that standardise on it; reserved for the metal provider.
	OSTalos = "talos"
)

// OSNames are the OS names OS accepts.
var OSNames = []string{OSK2, OSTalos}

// OS is OS <name> [version=…]: which operating system the machines boot.
type OS struct {
	Pos
	Name    string // OSK2 or OSTalos
	Version string // OSTalos only; ${ARG}s are expanded at build
}

const kwOS = "OS"

func (p *parser) os(n node) {
	const instr = kwOS
	const usage = "write OS k2 (the default: k2 OS), or OS talos version=<version>"
	if p.file.OS != nil {
		p.errorf(n.Keyword.Pos, instr, "remove this one; an artifact's machines boot one OS", "second OS (the first is at line %d)", p.file.OS.Line)
		return
	}
	if len(n.Args) == 0 {
		p.errorf(n.Keyword.Pos, instr, usage, "missing the OS name")
		return
	}
	name := n.Args[0]
	o := &OS{Pos: n.Keyword.Pos, Name: strings.ToLower(name.Val)}
	if name.isPair() || !contains(OSNames, o.Name) {
		hint := usage
		if s := suggest(name.Val, OSNames); s != "" {
			hint = "did you mean " + s + "? " + usage
		}
		p.errorf(name.Pos, instr, hint, "unknown OS %q; k2 knows %s", name.Val, strings.Join(OSNames, " and "))
		return
	}
	if o.Name == OSK2 && len(n.Args) > 1 {
		p.errorf(n.Args[1].Pos, instr, "k2 OS is the one this k2 builds ('k2 os build'); write OS k2", "OS k2 takes no options, got %q", n.Args[1].Val)
		return
	}
	opts, _ := p.options(instr, n.Args[1:], []string{"version"}, nil, "")
	if v, ok := opts["version"]; ok {
		t := v[len(v)-1]
		ver, ok := p.buildTime(instr, "OS version", t.ValPos, t.value())
		if !ok {
			return
		}
		o.Version = ver
	}
	if o.Name == OSTalos && o.Version == "" {
		p.errorf(name.Pos, instr, "write OS talos version=<version>, e.g. version=v1.9.0", "talos needs version=")
		return
	}
	p.file.OS = o
}
