package k8sfile

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"
)

// ParseFile reads and parses the K8sfile at path. See [Parse].
func ParseFile(path string) (*File, []string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading K8sfile: %w", err)
	}
	return Parse(path, src)
}

// Parse parses and validates a K8sfile. name is used in messages. It returns
// warnings (things that are legal but probably not meant, each prefixed with
// "name:line: "), and an error that joins every problem found (each an
// *[Error] with its position, sorted by position, at most [MaxErrors] of
// them), not just the first. On error the returned *File is nil. Every
// *Error matches [ErrInvalid]; use [Errors] to list them.
func Parse(name string, src []byte) (*File, []string, error) {
	f, warns, err := ParsePartial(name, src)
	if err != nil {
		return nil, warns, err
	}
	return f, warns, nil
}

// ParsePartial is [Parse] for checking a K8sfile in one pass: besides the
// same warnings and error it always returns a *File holding what parsed
// cleanly — every instruction on a line without an error — so a caller can
// go on to check the build context (ADD paths, values files, charts) of the
// rest and report those problems with the syntax errors. A File returned
// with an error must not be built into an artifact.
func ParsePartial(name string, src []byte) (*File, []string, error) {
	nodes, lexWarns, errs := lex(name, src)
	p := &parser{
		name:   name,
		file:   &File{Name: name},
		errs:   errs,
		warns:  lexWarns,
		args:   map[string]*Arg{},
		later:  map[string]Pos{},
		layers: map[string]layerUse{},
		pools:  map[string]Pos{},
		labels: map[string]Pos{},
	}
	p.parse(nodes)
	slices.SortStableFunc(p.warns, func(a, b warning) int { return cmp.Compare(a.line, b.line) })
	var warns []string
	for _, w := range p.warns {
		warns = append(warns, fmt.Sprintf("%s:%d: %s", name, w.line, w.msg))
	}
	if err := joinErrors(p.errs); err != nil {
		p.dropErrorLines()
		return p.file, warns, err
	}
	return p.file, warns, nil
}

// dropErrorLines removes from the file the layers and machine pools on lines
// with an error, so that what is left can be checked further without
// reporting a problem twice.
func (p *parser) dropErrorLines() {
	bad := map[int]bool{}
	for _, e := range p.errs {
		bad[e.Pos.Line] = true
	}
	p.file.Layers = slices.DeleteFunc(p.file.Layers, func(l Layer) bool { return bad[l.Position().Line] })
	p.file.Machines = slices.DeleteFunc(p.file.Machines, func(m MachinePool) bool { return bad[m.Line] })
}

// Expand resolves ${name} references in s from values. A reference to a name
// absent from values is an error wrapping [ErrUndefined] and naming it; a
// malformed reference ("${", "${}", "${a-b}") wraps [ErrTemplate]. "$$" is a
// literal "$", so "$${x}" expands to "${x}".
func Expand(s string, values map[string]string) (string, error) {
	return expand(s, func(name string) (string, error) {
		v, ok := values[name]
		if !ok {
			return "", fmt.Errorf("${%s}: %w %q", name, ErrUndefined, name)
		}
		return v, nil
	})
}

type layerUse struct {
	pos   Pos
	instr string
}

type parser struct {
	name  string
	file  *File
	errs  []*Error
	warns []warning

	args   map[string]*Arg // ARGs declared so far
	later  map[string]Pos  // every ARG in the file, to hint "declared later"
	layers map[string]layerUse
	pools  map[string]Pos
	labels map[string]Pos

	typos         map[string]bool   // options suggested for unknown keys by the last options call
	defaultsCache map[string]string // ARG defaults so far; reset by ARG
	sawFrom       bool
	firstMachine  *Pos
}

// instruction keywords, canonical spelling.
const (
	kwFrom     = "FROM"
	kwArg      = "ARG"
	kwLabel    = "LABEL"
	kwAdd      = "ADD"
	kwInstall  = "INSTALL"
	kwApp      = "APP"
	kwMachines = "MACHINES"
)

var keywords = []string{kwFrom, kwArg, kwLabel, kwAdd, kwInstall, kwApp, kwMachines, kwOS}

// dockerHints answers Dockerfile habits.
var dockerHints = map[string]string{
	"COPY":       "use ADD <path> [as <name>]",
	"ENV":        "use ARG <name>=<default> for a parameter, or APP <name> … env KEY=VALUE for an application's environment",
	"RUN":        "a K8sfile describes a cluster, not an image: ship what you need as ADD, INSTALL or APP",
	"CMD":        "a K8sfile describes a cluster, not an image: declare applications with APP <name> image=<ref>",
	"ENTRYPOINT": "a K8sfile describes a cluster, not an image: declare applications with APP <name> image=<ref>",
	"EXPOSE":     "ports belong to an application: APP <name> image=<ref> port=<port>",
	"HELM":       "use INSTALL <chart>",
}

func (p *parser) errorf(pos Pos, instr, hint, format string, a ...any) {
	p.errs = append(p.errs, &Error{Pos: pos, Instruction: instr, Msg: fmt.Sprintf(format, a...), Hint: hint})
}

func (p *parser) warnf(pos Pos, format string, a ...any) {
	p.warns = append(p.warns, warning{pos.Line, fmt.Sprintf(format, a...)})
}

func (p *parser) parse(nodes []node) {
	hasFrom := false
	for _, n := range nodes {
		if strings.EqualFold(n.Keyword.Val, kwFrom) {
			hasFrom = true
		}
		if strings.EqualFold(n.Keyword.Val, kwArg) {
			for _, a := range n.Args {
				if _, ok := p.later[a.key()]; !ok {
					p.later[a.key()] = a.Pos
				}
			}
		}
	}
	if !hasFrom {
		pos := Pos{File: p.name, Line: 1, Col: 1}
		if len(nodes) > 0 {
			pos = nodes[0].Keyword.Pos
		}
		p.errorf(pos, "", "start with FROM scratch, or FROM <artifact-ref> to build on a base such as k2/base:v1.37", "no FROM instruction")
	}
	misplaced := false
	for _, n := range nodes {
		kw := strings.ToUpper(n.Keyword.Val)
		if hasFrom && !p.sawFrom && kw != kwArg && kw != kwFrom && !misplaced && isKeyword(kw) {
			misplaced = true
			p.errorf(n.Keyword.Pos, kw, "move FROM above it; only ARG may come before FROM", "%s before FROM", kw)
		}
		switch kw {
		case kwFrom:
			p.from(n)
		case kwArg:
			p.arg(n)
		case kwLabel:
			p.label(n)
		case kwAdd:
			p.add(n)
		case kwInstall:
			p.install(n)
		case kwApp:
			p.app(n)
		case kwMachines:
			p.machines(n)
		case kwOS:
			p.os(n)
		default:
			p.unknown(n)
		}
	}
	p.checkControlPlane()
}

func isKeyword(kw string) bool {
	for _, k := range keywords {
		if k == kw {
			return true
		}
	}
	return false
}

func (p *parser) unknown(n node) {
	kw := strings.ToUpper(n.Keyword.Val)
	hint := "the instructions are " + strings.Join(keywords, ", ")
	if h, ok := dockerHints[kw]; ok {
		hint = h
	} else if s := suggest(kw, keywords); s != "" {
		hint = "did you mean " + s + "?"
	}
	p.errorf(n.Keyword.Pos, "", hint, "unknown instruction %q", n.Keyword.Val)
}

// --- ARG references -------------------------------------------------------

// checkRefs checks that every ${name} in s names an ARG declared above and
// returns the names. pos is where s starts.
func (p *parser) checkRefs(instr string, pos Pos, s string) ([]string, bool) {
	names, err := refs(s)
	if err != nil {
		p.errorf(pos, instr, "write ${name} for an ARG, or $$ for a literal $", "%v", err)
		return nil, false
	}
	ok := true
	seen := map[string]bool{}
	for _, name := range names {
		if _, declared := p.args[name]; declared || seen[name] {
			continue
		}
		seen[name] = true
		ok = false
		hint := fmt.Sprintf("declare it above this line: ARG %s=<default>", name)
		if lp, later := p.later[name]; later {
			hint = fmt.Sprintf("ARG %s is declared at line %d; move it above this line", name, lp.Line)
		} else if s := suggest(name, p.argNames()); s != "" {
			hint = fmt.Sprintf("did you mean ${%s}? or declare it above this line: ARG %s=<default>", s, name)
		}
		p.errorf(pos, instr, hint, "${%s} refers to an undeclared ARG %q", name, name)
	}
	return names, ok
}

func (p *parser) argNames() []string {
	out := make([]string, 0, len(p.file.Args))
	for _, a := range p.file.Args {
		out = append(out, a.Name)
	}
	return out
}

func (p *parser) defaults() map[string]string {
	if p.defaultsCache != nil {
		return p.defaultsCache
	}
	m := make(map[string]string, len(p.args))
	for name, a := range p.args {
		if a.Default != nil {
			m[name] = *a.Default
		}
	}
	p.defaultsCache = m
	return m
}

// buildTime expands s (field of instr, at pos) with the ARG defaults: build-
// time fields are fixed in the artifact. An ARG without a default is an error.
func (p *parser) buildTime(instr, field string, pos Pos, s string) (string, bool) {
	names, ok := p.checkRefs(instr, pos, s)
	if !ok {
		return "", false
	}
	for _, name := range names {
		if p.args[name].Default == nil {
			p.errorf(pos, instr, fmt.Sprintf("give it a default (ARG %s=<value>); the %s is fixed when the artifact is built", name, field),
				"${%s} has no default, but %s is resolved at build time", name, field)
			return "", false
		}
	}
	out, err := Expand(s, p.defaults())
	if err != nil { // unreachable: refs are checked
		p.errorf(pos, instr, "", "%v", err)
		return "", false
	}
	return out, true
}

// template checks a deploy-time field: its references are declared, and if
// all of them have defaults, the value expanded with the defaults passes
// check. s is kept as written.
func (p *parser) template(instr, field string, pos Pos, s string, check func(string) error) bool {
	names, ok := p.checkRefs(instr, pos, s)
	if !ok {
		return false
	}
	for _, name := range names {
		if p.args[name].Default == nil {
			return true // checked at deploy, when the value is known
		}
	}
	v, _ := Expand(s, p.defaults())
	if err := check(v); err != nil {
		if len(names) == 0 {
			p.errorf(pos, instr, fieldHint[field], "bad %s: %v", field, err)
		} else {
			p.errorf(pos, instr, fmt.Sprintf("%s expands to %q with the ARG defaults; fix the default of ARG %s", s, v, names[0]),
				"bad %s: %v", field, err)
		}
		return false
	}
	return true
}

// fieldHint says what a good value looks like.
var fieldHint = map[string]string{
	"image":    "give an image reference such as nginx:1.27 or registry.local:5000/team/app@sha256:<digest>",
	"port":     "give port numbers from 1 to 65535: port=80 or port=80,443",
	"replicas": "give a whole number ≥ 0: replicas=3",
	"count":    "give a whole number ≥ 0 of machines: worker=3",
	"cpu":      "give cores: cpu=2, cpu=0.5 or cpu=500m",
	"memory":   "give a size such as memory=4Gi or memory=512Mi",
	"disk":     "give a size such as disk=20Gi",
	"arch":     "give arch=amd64 or arch=arm64",
	"datastore": "give datastore=sqlite (one server), datastore=etcd (embedded in the servers) or an external one: " +
		"etcd://host:2379, postgres://user:pass@host:5432/db, mysql://user:pass@tcp(host:3306)/db",
}

// --- shared checks --------------------------------------------------------

// layer records a layer name, reporting a duplicate.
func (p *parser) layer(instr string, pos Pos, name, hint string) {
	if prev, dup := p.layers[name]; dup {
		p.errorf(pos, instr, hint, "layer name %q is already used by %s at line %d", name, prev.instr, prev.pos.Line)
		return
	}
	p.layers[name] = layerUse{pos: pos, instr: instr}
}

// contextPath checks a path relative to the build context.
func (p *parser) contextPath(instr, field string, t token, s string) bool {
	switch {
	case s == "":
		p.errorf(t.Pos, instr, "", "%s is empty", field)
	case strings.Contains(s, "://"):
		p.errorf(t.Pos, instr, "ADD takes local files; fetch charts from a repository with INSTALL <chart>", "%s %q is a URL", field, s)
	case strings.HasPrefix(s, "/") || (len(s) > 1 && s[1] == ':'):
		p.errorf(t.Pos, instr, "write it relative to the build context directory, so the build is reproducible anywhere", "%s %q is absolute", field, s)
	case escapes(s):
		p.errorf(t.Pos, instr, "keep inputs inside the build context directory", "%s %q leaves the build context", field, s)
	default:
		return true
	}
	return false
}

// escapes reports whether the relative path s climbs out of its root.
func escapes(s string) bool {
	depth := 0
	for _, el := range strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == '\\' }) {
		switch el {
		case ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// options splits args into known key=value options and, after the list
// keyword (set, env; "" for none), the list's key=value pairs. It reports
// bare words, unknown keys and repeats of a key not in repeatable.
func (p *parser) options(instr string, args []token, valid []string, repeatable map[string]bool, list string) (opts map[string][]token, items []token) {
	opts = map[string][]token{}
	p.typos = map[string]bool{}
	inList := false
	var listTok *token // the last list keyword, while no pair has followed it
	emptyList := func() {
		if listTok != nil {
			p.errorf(listTok.Pos, instr, "follow it with key=value pairs, or remove it", "%s without key=value pairs", list)
		}
	}
	for _, t := range args {
		if list != "" && !t.Quoted && t.Val == list {
			emptyList()
			inList = true
			listTok = &t
			continue
		}
		if !t.isPair() {
			hint := "options are key=value: " + strings.Join(valid, ", ")
			if s := suggest(t.Val, append(append([]string{}, valid...), list)); s == list && list != "" {
				hint = "did you mean " + list + "? it starts a list of key=value pairs"
			}
			if inList {
				hint = "after " + list + " come key=value pairs"
				listTok = nil
			}
			p.errorf(t.Pos, instr, hint, "unexpected %q", t.Val)
			continue
		}
		if inList {
			if t.key() == "" {
				p.errorf(t.Pos, instr, "write key=value", "%s with an empty key", list)
				continue
			}
			items = append(items, t)
			listTok = nil
			continue
		}
		k := t.key()
		if !contains(valid, k) {
			hint := "valid options: " + strings.Join(valid, ", ")
			if list != "" {
				hint += "; " + list + " key=value …"
			}
			if s := suggest(k, valid); s != "" {
				hint = "did you mean " + s + "? " + hint
				p.typos[s] = true
			}
			p.errorf(t.Pos, instr, hint, "unknown option %q", k)
			continue
		}
		if len(opts[k]) > 0 && !repeatable[k] {
			p.errorf(t.Pos, instr, "give it once", "%s given twice (first at column %d)", k, opts[k][0].Col)
			continue
		}
		opts[k] = append(opts[k], t)
	}
	emptyList()
	return opts, items
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
