package k8sfile

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ArgValues returns the value of every ARG for one environment: values
// (e.g. from --set name=value or an env file) over the ARG defaults. A value
// for an undeclared name wraps [ErrUnknownArg]; a required ARG (no default)
// without a value is an *[Error] at its declaration. All problems are joined.
func (f *File) ArgValues(values map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(f.Args))
	declared := make(map[string]bool, len(f.Args))
	var errs []error
	var missing []*Error
	for _, a := range f.Args {
		declared[a.Name] = true
		if v, ok := values[a.Name]; ok {
			out[a.Name] = v
		} else if a.Default != nil {
			out[a.Name] = *a.Default
		} else {
			missing = append(missing, &Error{Pos: f.pos(a.Pos), Instruction: kwArg,
				Msg:  fmt.Sprintf("%s has no default and no value was given", a.Name),
				Hint: fmt.Sprintf("give it a value for this environment: --set %s=<value>", a.Name)})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if !declared[name] {
			hint := "the ARGs are: " + strings.Join(f.argNames(), ", ")
			if len(f.Args) == 0 {
				hint = "the K8sfile declares no ARG"
			} else if s := suggest(name, f.argNames()); s != "" {
				hint = "did you mean " + s + "? " + hint
			}
			errs = append(errs, fmt.Errorf("%w %q; %s", ErrUnknownArg, name, hint))
		}
	}
	if err := joinErrors(missing); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (f *File) argNames() []string {
	names := make([]string, len(f.Args))
	for i, a := range f.Args {
		names[i] = a.Name
	}
	return names
}

// pos fills in the file name, which a File read back from JSON has lost.
func (f *File) pos(p Pos) Pos {
	if p.File == "" {
		p.File = f.Name
	}
	return p
}

// Resolve returns a copy of f for one environment: every template in APP,
// MACHINES and INSTALL set= expanded with [File.ArgValues] and checked as
// [Parse] checks literal values (image reference, ports, replicas, counts,
// quantities, arch, a control-plane of at least one machine). Port lists
// that a template expanded ("80,443") are split, one port per entry. Each
// problem is an *[Error] at its instruction; all are joined.
func (f *File) Resolve(values map[string]string) (*File, error) {
	vals, err := f.ArgValues(values)
	if err != nil {
		return nil, err
	}
	out := *f
	out.Args = slices.Clone(f.Args)
	out.Labels = slices.Clone(f.Labels)
	out.Layers = make([]Layer, 0, len(f.Layers))
	out.Machines = make([]MachinePool, 0, len(f.Machines))
	r := &resolver{f: f, vals: vals}
	for _, l := range f.Layers {
		switch l := l.(type) {
		case *App:
			a := *l
			a.Image = r.field(l.Pos, kwApp, "image", l.Image, ValidateRef)
			a.Ports = nil
			for _, p := range l.Ports {
				for port := range strings.SplitSeq(r.field(l.Pos, kwApp, "port", p, checkPorts), ",") {
					a.Ports = append(a.Ports, port)
				}
			}
			if l.Replicas != "" {
				a.Replicas = r.field(l.Pos, kwApp, "replicas", l.Replicas, checkCount)
			}
			a.Env = r.kvs(l.Pos, kwApp, "env", l.Env)
			out.Layers = append(out.Layers, &a)
		case *Install:
			in := *l
			in.Set = r.kvs(l.Pos, kwInstall, "set", l.Set)
			out.Layers = append(out.Layers, &in)
		case *Add:
			a := *l
			out.Layers = append(out.Layers, &a)
		default:
			out.Layers = append(out.Layers, l)
		}
	}
	for _, mp := range f.Machines {
		m := mp
		m.Count = r.field(mp.Pos, kwMachines, "count", mp.Count, checkCount)
		for _, fld := range []struct {
			name string
			v    *string
		}{{"cpu", &m.CPU}, {"memory", &m.Memory}, {"disk", &m.Disk}, {"arch", &m.Arch}} {
			if *fld.v != "" {
				*fld.v = r.field(mp.Pos, kwMachines, fld.name, *fld.v, machineChecks[fld.name])
			}
		}
		if m.Pool == ControlPlanePool && checkCount(m.Count) == nil && strings.TrimLeft(m.Count, "0") == "" {
			r.errorf(mp.Pos, kwMachines, fmt.Sprintf("%s is %q in this environment; give it at least 1", mp.Count, m.Count),
				"control-plane pool has no machines")
		}
		out.Machines = append(out.Machines, m)
	}
	if err := joinErrors(r.errs); err != nil {
		return nil, err
	}
	return &out, nil
}

type resolver struct {
	f    *File
	vals map[string]string
	errs []*Error
}

func (r *resolver) errorf(pos Pos, instr, hint, format string, a ...any) {
	r.errs = append(r.errs, &Error{Pos: r.f.pos(pos), Instruction: instr, Msg: fmt.Sprintf(format, a...), Hint: hint})
}

// field expands a template and checks the result.
func (r *resolver) field(pos Pos, instr, name, tmpl string, check func(string) error) string {
	v, err := Expand(tmpl, r.vals)
	if err != nil {
		r.errorf(pos, instr, "", "%s: %v", name, err)
		return tmpl
	}
	if err := check(v); err != nil {
		hint := fieldHint[name]
		if v != tmpl {
			hint = fmt.Sprintf("%s is %q in this environment; %s", tmpl, v, hint)
		}
		r.errorf(pos, instr, hint, "bad %s: %v", name, err)
	}
	return v
}

func (r *resolver) kvs(pos Pos, instr, list string, kvs []KV) []KV {
	if kvs == nil {
		return nil
	}
	out := make([]KV, len(kvs))
	for i, kv := range kvs {
		out[i] = KV{Key: kv.Key, Value: r.field(pos, instr, list+" "+kv.Key, kv.Value, func(string) error { return nil })}
	}
	return out
}
