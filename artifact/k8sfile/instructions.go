package k8sfile

import (
	"slices"
	"strings"
)

// One method per instruction: each turns a node into its typed instruction,
// reporting every problem it finds and carrying on.

func (p *parser) from(n node) {
	const instr = kwFrom
	if p.sawFrom {
		p.errorf(n.Keyword.Pos, instr, "remove this one; a K8sfile builds one artifact from one base", "second FROM (the first is at line %d)", p.file.From.Line)
		return
	}
	p.sawFrom = true
	p.file.From.Pos = n.Keyword.Pos
	if len(n.Args) == 3 && strings.EqualFold(n.Args[1].Val, "as") {
		p.errorf(n.Args[1].Pos, instr, "remove "+n.Args[1].Val+" "+n.Args[2].Val+"; a K8sfile has one stage: FROM <artifact-ref>", "multi-stage builds are not supported")
		return
	}
	if len(n.Args) != 1 {
		pos := n.Keyword.Pos
		if len(n.Args) > 1 {
			pos = n.Args[1].Pos
		}
		p.errorf(pos, instr, "write FROM scratch, or FROM <artifact-ref> such as k2/base:v1.37", "expected one reference, got %d arguments", len(n.Args))
		return
	}
	t := n.Args[0]
	ref, ok := p.buildTime(instr, "FROM reference", t.Pos, t.Val)
	if !ok {
		return
	}
	if strings.EqualFold(ref, "scratch") {
		p.file.From.Ref = "scratch"
		return
	}
	if err := ValidateRef(ref); err != nil {
		p.errorf(t.Pos, instr, "write FROM scratch, or FROM <artifact-ref>: [host[:port]/]path[:tag][@sha256:<digest>]", "bad reference: %v", err)
		return
	}
	p.file.From.Ref = ref
}

func (p *parser) arg(n node) {
	const instr = kwArg
	if len(n.Args) == 0 {
		p.errorf(n.Keyword.Pos, instr, "write ARG <name> or ARG <name>=<default>", "missing name")
		return
	}
	for _, t := range n.Args {
		name := t.key()
		if !validArgName(name) {
			p.errorf(t.Pos, instr, "names are letters, digits and _, not starting with a digit: ARG replicas=2", "bad name %q", name)
			continue
		}
		if prev, dup := p.args[name]; dup {
			p.errorf(t.Pos, instr, "remove one; an environment sets it at deploy with --set "+name+"=<value>", "%s is already declared at line %d", name, prev.Line)
			continue
		}
		a := Arg{Pos: t.Pos, Name: name}
		if t.isPair() {
			v := t.value()
			if names, err := refs(v); err == nil && len(names) > 0 {
				p.errorf(t.ValPos, instr, "ARG defaults are literal; write the value itself (use $$ for a literal $)", "default of %s refers to ${%s}", name, names[0])
				continue
			}
			a.Default = &v
		}
		p.file.Args = append(p.file.Args, a)
		p.args[name] = &p.file.Args[len(p.file.Args)-1]
	}
	p.defaultsCache = nil
	// Re-point the map: appending may have moved the slice.
	for i := range p.file.Args {
		p.args[p.file.Args[i].Name] = &p.file.Args[i]
	}
}

func (p *parser) label(n node) {
	const instr = kwLabel
	if len(n.Args) == 0 {
		p.errorf(n.Keyword.Pos, instr, "write LABEL key=value [key=value …]", "missing key=value")
		return
	}
	for _, t := range n.Args {
		if !t.isPair() || t.key() == "" {
			p.errorf(t.Pos, instr, `write key=value, quoting a value with blanks: LABEL org.opencontainers.image.description="my cluster"`, "expected key=value, got %q", t.Val)
			continue
		}
		key, ok1 := p.buildTime(instr, "label", t.Pos, t.key())
		val, ok2 := p.buildTime(instr, "label", t.ValPos, t.value())
		if !ok1 || !ok2 {
			continue
		}
		if prev, dup := p.labels[key]; dup {
			p.warnf(t.Pos, "LABEL %s overrides the value set at line %d", key, prev.Line)
		}
		p.labels[key] = t.Pos
		p.file.Labels = append(p.file.Labels, Label{Pos: t.Pos, Key: key, Value: val})
	}
}

func (p *parser) add(n node) {
	const instr = kwAdd
	const usage = "write ADD <path> [as <name>]"
	args := n.Args
	switch {
	case len(args) == 0:
		p.errorf(n.Keyword.Pos, instr, usage, "missing path")
		return
	case len(args) == 2 && strings.EqualFold(args[1].Val, "as"):
		p.errorf(args[1].Pos, instr, usage, "missing name after %s", args[1].Val)
		return
	case len(args) == 2 || len(args) > 3 || (len(args) == 3 && !strings.EqualFold(args[1].Val, "as")):
		p.errorf(args[1].Pos, instr, usage, "unexpected %q", args[1].Val)
		return
	}
	a := &Add{Pos: n.Keyword.Pos}
	path, ok := p.buildTime(instr, "path", args[0].Pos, args[0].Val)
	if !ok || !p.contextPath(instr, "path", args[0], path) {
		return
	}
	a.Path = path
	if len(args) == 3 {
		name, ok := p.buildTime(instr, "name", args[2].Pos, args[2].Val)
		if !ok {
			return
		}
		if err := checkLabel(name); err != nil {
			p.errorf(args[2].Pos, instr, "layer names are DNS-1123 labels: ADD ./charts/argocd as argocd", "bad name: %v", err)
			return
		}
		a.Name = name
	} else {
		a.Name = addLayerName(path)
		if a.Name == "" {
			p.errorf(args[0].Pos, instr, "name the layer: ADD "+args[0].Val+" as <name>", "cannot derive a layer name from path %q", path)
			return
		}
	}
	p.layer(instr, a.Pos, a.Name, "name this one differently: ADD <path> as <name>")
	p.file.Layers = append(p.file.Layers, a)
}

var installOptions = []string{"version", "namespace", "values", "name"}

func (p *parser) install(n node) {
	const instr = kwInstall
	if len(n.Args) == 0 || n.Args[0].isPair() {
		p.errorf(n.Keyword.Pos, instr, chartForms, "missing chart")
		return
	}
	in := &Install{Pos: n.Keyword.Pos}
	ct := n.Args[0]
	opts, sets := p.options(instr, n.Args[1:], installOptions, nil, "set")
	chart, ok := p.buildTime(instr, "chart", ct.Pos, ct.Val)
	var ref ChartRef
	if ok {
		var err error
		if ref, err = ParseChartRef(chart); err != nil {
			p.errorf(ct.Pos, instr, chartForms, "%v", err)
			ok = false
		}
	}
	in.Chart = chart
	opt := func(key string) (token, string, bool) {
		ts := opts[key]
		if len(ts) == 0 {
			return token{}, "", false
		}
		v, ok := p.buildTime(instr, key, ts[0].ValPos, ts[0].value())
		return ts[0], v, ok
	}
	if t, v, has := opt("version"); has {
		switch {
		case v == "":
			p.errorf(t.ValPos, instr, "give a chart version such as version=1.2.3, or leave version= out for the newest", "version is empty")
			ok = false
		case ref.Tag != "" && ref.Tag != v:
			p.errorf(t.ValPos, instr, "give the version once, in the reference or in version=", "version=%s contradicts the reference's tag %q", v, ref.Tag)
			ok = false
		}
		in.Version = v
	} else if ref.Tag != "" {
		in.Version = ref.Tag
	}
	if t, v, has := opt("namespace"); has {
		if err := checkLabel(v); err != nil {
			p.errorf(t.ValPos, instr, "namespaces are DNS-1123 labels: namespace=monitoring", "bad namespace: %v", err)
			ok = false
		}
		in.Namespace = v
	}
	if t, v, has := opt("values"); has {
		if !p.contextPath(instr, "values file", token{Pos: t.ValPos}, v) {
			ok = false
		}
		in.ValuesFile = v
	}
	if t, v, has := opt("name"); has {
		if err := checkLabel(v); err != nil {
			p.errorf(t.ValPos, instr, "release names are DNS-1123 labels: name=metrics", "bad name: %v", err)
			ok = false
		}
		in.Name = v
	} else if ref.Chart != "" {
		in.Name = toLabel(ref.Chart)
	}
	seen := map[string]Pos{}
	for _, t := range sets {
		k := t.key()
		if prev, dup := seen[k]; dup {
			p.errorf(t.Pos, instr, "give each value once", "set %s given twice (first at column %d)", k, prev.Col)
			ok = false
			continue
		}
		seen[k] = t.Pos
		if slices.Contains(installOptions, k) {
			p.warnf(t.Pos, "INSTALL set %s=… sets the chart value %q, not INSTALL's %s option; put options before set", k, k, k)
		}
		if !p.template(instr, "set "+k, t.ValPos, t.value(), func(string) error { return nil }) {
			ok = false
		}
		in.Set = append(in.Set, KV{Key: k, Value: t.value()})
	}
	if !ok || in.Name == "" {
		return
	}
	p.layer(instr, in.Pos, in.Name, "name this release differently: name=<name>")
	p.file.Layers = append(p.file.Layers, in)
}

var appOptions = []string{"image", "port", "replicas"}

func (p *parser) app(n node) {
	const instr = kwApp
	const usage = "write APP <name> image=<ref> [port=…] [replicas=…] [env KEY=VALUE …]"
	if len(n.Args) == 0 || n.Args[0].isPair() {
		p.errorf(n.Keyword.Pos, instr, usage, "missing name")
		return
	}
	a := &App{Pos: n.Keyword.Pos}
	nt := n.Args[0]
	ok := true
	if name, good := p.buildTime(instr, "name", nt.Pos, nt.Val); !good {
		ok = false
	} else if err := checkLabel(name); err != nil {
		p.errorf(nt.Pos, instr, "application names are DNS-1123 labels: APP web image=nginx:1.27", "bad name: %v", err)
		ok = false
	} else {
		a.Name = name
	}
	opts, env := p.options(instr, n.Args[1:], appOptions, map[string]bool{"port": true}, "env")
	if ts := opts["image"]; len(ts) == 0 {
		if !p.typos["image"] { // else "did you mean image?" said it
			p.errorf(n.Keyword.Pos, instr, "add image=<ref>, e.g. image=nginx:1.27", "missing image")
		}
		ok = false
	} else {
		a.Image = ts[0].value()
		good := p.template(instr, "image", ts[0].ValPos, a.Image, ValidateRef)
		if good && !strings.Contains(a.Image, "$") && unpinned(a.Image) {
			p.warnf(ts[0].Pos, "APP %s: image %s has no tag or digest (or is :latest), so each deploy may run a different image; pin a version or @sha256: digest", nt.Val, a.Image)
		}
		ok = good && ok
	}
	for _, t := range opts["port"] {
		// port=80,443 is two ports; a template that expands to a list
		// stays one entry (see App.Ports).
		for port := range strings.SplitSeq(t.value(), ",") {
			a.Ports = append(a.Ports, port)
			ok = p.template(instr, "port", t.ValPos, port, checkPorts) && ok
		}
	}
	if ts := opts["replicas"]; len(ts) > 0 {
		a.Replicas = ts[0].value()
		ok = p.template(instr, "replicas", ts[0].ValPos, a.Replicas, checkCount) && ok
	}
	seen := map[string]Pos{}
	for _, t := range env {
		k := t.key()
		switch prev, dup := seen[k]; {
		case dup:
			p.errorf(t.Pos, instr, "give each variable once", "env %s given twice (first at column %d)", k, prev.Col)
			ok = false
			continue
		case !envNameRE.MatchString(k):
			p.errorf(t.Pos, instr, "variable names are letters, digits, _ . and -, not starting with a digit", "bad env name %q", k)
			ok = false
			continue
		}
		seen[k] = t.Pos
		if slices.Contains(appOptions, k) {
			p.warnf(t.Pos, "APP env %s=… sets an environment variable, not APP's %s option; put options before env", k, k)
		}
		ok = p.template(instr, "env "+k, t.ValPos, t.value(), func(string) error { return nil }) && ok
		a.Env = append(a.Env, KV{Key: k, Value: t.value()})
	}
	if !ok {
		return
	}
	p.layer(instr, a.Pos, a.Name, "give each APP its own name")
	p.file.Layers = append(p.file.Layers, a)
}

var (
	machineOptions = []string{"cpu", "memory", "disk", "arch", "datastore"}
	machineChecks  = map[string]func(string) error{"cpu": checkCPU, "memory": checkSize, "disk": checkSize, "arch": checkArch, "datastore": checkDatastore}
)

// ControlPlanePool is the MACHINES pool that runs the control plane; a
// K8sfile with MACHINES must give it at least one machine.
const ControlPlanePool = "control-plane"

func (p *parser) machines(n node) {
	const instr = kwMachines
	const usage = "write MACHINES <pool>=<count> … [cpu=…] [memory=…] [disk=…] [arch=amd64|arm64] [datastore=…], e.g. MACHINES control-plane=1 worker=3 memory=4Gi"
	if p.firstMachine == nil {
		pos := n.Keyword.Pos
		p.firstMachine = &pos
	}
	var shared MachinePool
	var pools []MachinePool
	var datastorePos Pos
	seenOpt := map[string]int{}
	ok := true
	for _, t := range n.Args {
		if !t.isPair() {
			p.errorf(t.Pos, instr, usage, "expected <pool>=<count> or option=value, got %q", t.Val)
			ok = false
			continue
		}
		k, v := t.key(), t.value()
		if slices.Contains(machineOptions, k) {
			if col, dup := seenOpt[k]; dup {
				p.errorf(t.Pos, instr, "give it once per line", "%s given twice (first at column %d)", k, col)
				ok = false
				continue
			}
			seenOpt[k] = t.Col
			ok = p.template(instr, k, t.ValPos, v, machineChecks[k]) && ok
			switch k {
			case "cpu":
				shared.CPU = v
			case "memory":
				shared.Memory = v
			case "disk":
				shared.Disk = v
			case "arch":
				shared.Arch = v
			case "datastore":
				shared.Datastore = v
				datastorePos = t.Pos
			}
			continue
		}
		// A pool — unless it is a misspelt option with a non-count value.
		if s := suggest(k, machineOptions); s != "" && (checkCount(v) != nil || strings.EqualFold(k, s)) {
			p.errorf(t.Pos, instr, "did you mean "+s+"? valid options: "+strings.Join(machineOptions, ", ")+"; any other key is a pool: <pool>=<count>",
				"unknown option %q", k)
			ok = false
			continue
		}
		if err := checkLabel(k); err != nil {
			p.errorf(t.Pos, instr, "pool names are DNS-1123 labels: control-plane=1 worker=3", "bad pool name: %v", err)
			ok = false
			continue
		}
		if prev, dup := p.pools[k]; dup {
			p.errorf(t.Pos, instr, "name each pool once in the file; to change its size, edit that line", "pool %q is already declared at line %d", k, prev.Line)
			ok = false
			continue
		}
		p.pools[k] = t.Pos
		ok = p.template(instr, "count", t.ValPos, v, checkCount) && ok
		pools = append(pools, MachinePool{Pos: t.Pos, Pool: k, Count: v})
	}
	if len(pools) == 0 {
		if ok {
			p.errorf(n.Keyword.Pos, instr, usage, "no pool")
		}
		return
	}
	if shared.Datastore != "" && !slices.ContainsFunc(pools, func(mp MachinePool) bool { return mp.Pool == ControlPlanePool }) {
		p.errorf(datastorePos, instr, "put datastore= on the line with control-plane=<count>: MACHINES control-plane=3 datastore=etcd",
			"datastore= belongs to the %s pool, which this line does not name", ControlPlanePool)
	}
	for _, mp := range pools {
		mp.CPU, mp.Memory, mp.Disk, mp.Arch = shared.CPU, shared.Memory, shared.Disk, shared.Arch
		if mp.Pool == ControlPlanePool {
			mp.Datastore = shared.Datastore
			p.checkControlPlaneCount(mp)
		}
		p.file.Machines = append(p.file.Machines, mp)
	}
}

// checkControlPlaneCount reports a control-plane pool of zero machines
// (literal, or by the default of its ARG).
func (p *parser) checkControlPlaneCount(mp MachinePool) {
	names, err := refs(mp.Count)
	if err != nil {
		return
	}
	for _, name := range names {
		if a, ok := p.args[name]; !ok || a.Default == nil {
			return
		}
	}
	v, err := Expand(mp.Count, p.defaults())
	if err != nil || checkCount(v) != nil {
		return // reported already
	}
	if strings.TrimLeft(v, "0") == "" {
		p.errorf(mp.Pos, kwMachines, "give the control plane at least one machine: control-plane=1", "control-plane pool has no machines")
	}
}

// checkControlPlane requires a control-plane pool of a K8sfile built FROM
// scratch; a K8sfile built FROM a base may add pools to the base's control
// plane (the builder checks the merged pools).
func (p *parser) checkControlPlane() {
	if p.firstMachine == nil || len(p.pools) == 0 {
		return // a MACHINES line without pools is reported where it is
	}
	if !p.file.From.Scratch() {
		return
	}
	if _, ok := p.pools[ControlPlanePool]; !ok {
		p.errorf(*p.firstMachine, kwMachines, "add control-plane=<count> with a count of at least 1, e.g. MACHINES control-plane=1 worker=3",
			"no %s pool", ControlPlanePool)
	}
}
