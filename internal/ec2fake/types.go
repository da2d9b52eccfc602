package ec2fake

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

type instanceType struct {
	Name    string
	VCPU    int
	MiB     int
	Arch    string // x86_64, arm64
	Current bool
	Metal   bool
}

// catalogue is the instance types the fake offers (a few families of the
// real ones, with their real sizes).
var catalogue = func() []instanceType {
	var out []instanceType
	add := func(family, arch string, sizes ...string) {
		for _, sz := range sizes {
			f := strings.Fields(sz)
			v, _ := strconv.Atoi(f[1])
			m, _ := strconv.Atoi(f[2])
			out = append(out, instanceType{Name: family + "." + f[0], VCPU: v, MiB: m, Arch: arch, Current: true, Metal: f[0] == "metal"})
		}
	}
	add("t3", "x86_64", "micro 2 1024", "small 2 2048", "medium 2 4096", "large 2 8192", "xlarge 4 16384", "2xlarge 8 32768")
	add("m6i", "x86_64", "large 2 8192", "xlarge 4 16384", "2xlarge 8 32768", "4xlarge 16 65536", "metal 128 524288")
	add("c6i", "x86_64", "large 2 4096", "xlarge 4 8192", "2xlarge 8 16384")
	add("r6i", "x86_64", "large 2 16384", "xlarge 4 32768")
	add("t4g", "arm64", "micro 2 1024", "small 2 2048", "medium 2 4096", "large 2 8192", "xlarge 4 16384")
	add("m7g", "arm64", "large 2 8192", "xlarge 4 16384", "2xlarge 8 32768")
	add("c7g", "arm64", "large 2 4096", "xlarge 4 8192")
	out = append(out, instanceType{Name: "m1.small", VCPU: 1, MiB: 1740, Arch: "x86_64"})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}()

func lookupType(name string) (instanceType, bool) {
	for _, t := range catalogue {
		if t.Name == name {
			return t, true
		}
	}
	return instanceType{}, false
}

func (s *Server) describeInstanceTypes(p *params, now time.Time) (any, *apiError) {
	names, fs := p.strs("InstanceType"), p.filters()
	var sel []instanceType
	for _, t := range catalogue {
		if len(names) > 0 && !contains(names, t.Name) {
			continue
		}
		if !matches(fs, func(n string) []string { return typeField(t, n) }) {
			continue
		}
		sel = append(sel, t)
	}
	for _, n := range names {
		if _, ok := lookupType(n); !ok {
			return nil, badRequest("InvalidInstanceType", "The following supplied instance types do not exist: [%s]", n)
		}
	}
	// Pages of MaxResults (5..100); without it, pages of 10 so that
	// clients must paginate as they must with the real catalogue.
	size := p.int("MaxResults", 10)
	if size < 5 || size > 100 {
		return nil, badRequest("InvalidParameterValue", "MaxResults must be between 5 and 100")
	}
	start := 0
	if tok := p.str("NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "fake-"))
		if err != nil || n < 0 || n > len(sel) {
			return nil, badRequest("InvalidNextToken", "The specified token is invalid")
		}
		start = n
	}
	end := min(start+size, len(sel))
	type xmlType struct {
		InstanceType string   `xml:"instanceType"`
		Current      bool     `xml:"currentGeneration"`
		BareMetal    bool     `xml:"bareMetal"`
		Hypervisor   string   `xml:"hypervisor,omitempty"`
		Archs        []string `xml:"processorInfo>supportedArchitectures>item"`
		VCPUs        int      `xml:"vCpuInfo>defaultVCpus"`
		MiB          int      `xml:"memoryInfo>sizeInMiB"`
		RootTypes    []string `xml:"supportedRootDeviceTypes>item"`
		Usage        []string `xml:"supportedUsageClasses>item"`
	}
	out := struct {
		Types     []xmlType `xml:"instanceTypeSet>item"`
		NextToken string    `xml:"nextToken,omitempty"`
	}{}
	for _, t := range sel[start:end] {
		x := xmlType{InstanceType: t.Name, Current: t.Current, BareMetal: t.Metal, Archs: []string{t.Arch}, VCPUs: t.VCPU, MiB: t.MiB,
			RootTypes: []string{"ebs"}, Usage: []string{"on-demand", "spot"}}
		if !t.Metal {
			x.Hypervisor = "nitro"
		}
		if t.Arch == "x86_64" && t.Name == "m1.small" {
			x.Archs = []string{"i386", "x86_64"}
		}
		out.Types = append(out.Types, x)
	}
	if end < len(sel) {
		out.NextToken = "fake-" + strconv.Itoa(end)
	}
	return out, nil
}

func typeField(t instanceType, name string) []string {
	switch name {
	case "instance-type":
		return []string{t.Name}
	case "processor-info.supported-architecture":
		if t.Name == "m1.small" {
			return []string{"i386", "x86_64"}
		}
		return []string{t.Arch}
	case "vcpu-info.default-vcpus":
		return []string{strconv.Itoa(t.VCPU)}
	case "memory-info.size-in-mib":
		return []string{strconv.Itoa(t.MiB)}
	case "current-generation":
		return []string{strconv.FormatBool(t.Current)}
	case "bare-metal":
		return []string{strconv.FormatBool(t.Metal)}
	}
	return nil
}
