package libvirt

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
)

// machineMeta is the metadata element of a domain k2 made: its labels and
// everything else made for it, so Delete and a retried Create find it all
// from the domain alone.
type machineMeta struct {
	XMLName     xml.Name `xml:"https://k2.dev/libvirt/v1 machine"`
	Environment string   `xml:"environment"`
	RequestID   string   `xml:"request-id"`
	Machine     string   `xml:"name"`
	Role        string   `xml:"role,omitempty"`
	MachinePool string   `xml:"pool,omitempty"`
	Arch        string   `xml:"arch,omitempty"`
	// StoragePool holds Volumes (the machine's own) and the image's.
	StoragePool string      `xml:"storage-pool"`
	Volumes     []string    `xml:"volume"`
	Network     string      `xml:"network"`
	NetworkMine bool        `xml:"network-owned"` // the network is k2-<env>, made by k2
	Image       string      `xml:"image,omitempty"`
	Labels      []labelMeta `xml:"label"`
}

type labelMeta struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

func (m *machineMeta) labels() map[string]string {
	out := map[string]string{}
	for _, l := range m.Labels {
		out[l.Key] = l.Value
	}
	return out
}

func labelList(m map[string]string) []labelMeta {
	var out []labelMeta
	for k, v := range m {
		out = append(out, labelMeta{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// networkMeta is the metadata element of a network k2 made.
type networkMeta struct {
	XMLName     xml.Name `xml:"https://k2.dev/libvirt/v1 network"`
	Environment string   `xml:"environment"`
	RequestID   string   `xml:"request-id"`
}

// metadata wraps any of the metadata elements.
type metadata struct {
	Machine *machineMeta `xml:"https://k2.dev/libvirt/v1 machine,omitempty"`
	Network *networkMeta `xml:"https://k2.dev/libvirt/v1 network,omitempty"`
}

// domainXML is the part of libvirt's domain XML k2 writes and reads.
type domainXML struct {
	XMLName  xml.Name  `xml:"domain"`
	Type     string    `xml:"type,attr"`
	Name     string    `xml:"name"`
	UUID     string    `xml:"uuid,omitempty"`
	Title    string    `xml:"title,omitempty"`
	Metadata *metadata `xml:"metadata"`
	Memory   sizeXML   `xml:"memory"`
	VCPU     int       `xml:"vcpu"`
	OS       struct {
		Type struct {
			Arch  string `xml:"arch,attr,omitempty"`
			Value string `xml:",chardata"`
		} `xml:"type"`
		Kernel  string `xml:"kernel,omitempty"`
		Initrd  string `xml:"initrd,omitempty"`
		Cmdline string `xml:"cmdline,omitempty"`
	} `xml:"os"`
	Features   *featuresXML `xml:"features,omitempty"`
	CPU        *cpuXML      `xml:"cpu,omitempty"`
	OnPoweroff string       `xml:"on_poweroff,omitempty"`
	OnReboot   string       `xml:"on_reboot,omitempty"`
	OnCrash    string       `xml:"on_crash,omitempty"`
	Devices    devicesXML   `xml:"devices"`
}

type sizeXML struct {
	Unit  string `xml:"unit,attr,omitempty"`
	Value uint64 `xml:",chardata"`
}

// bytes is the size in bytes (libvirt defaults to KiB).
func (s sizeXML) bytes() int64 {
	mul := map[string]uint64{"": 1 << 10, "b": 1, "bytes": 1, "k": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
		"G": 1 << 30, "GiB": 1 << 30, "KB": 1000, "MB": 1e6, "GB": 1e9}[s.Unit]
	if mul == 0 {
		mul = 1 << 10
	}
	return int64(s.Value * mul)
}

type featuresXML struct {
	ACPI *struct{} `xml:"acpi"`
	APIC *struct{} `xml:"apic"`
}

type cpuXML struct {
	Mode  string       `xml:"mode,attr,omitempty"`
	Match string       `xml:"match,attr,omitempty"`
	Model *cpuModelXML `xml:"model,omitempty"`
}

type cpuModelXML struct {
	Fallback string `xml:"fallback,attr,omitempty"`
	Value    string `xml:",chardata"`
}

type devicesXML struct {
	Disks      []diskXML      `xml:"disk"`
	Interfaces []interfaceXML `xml:"interface"`
	Serials    []charXML      `xml:"serial"`
	Consoles   []charXML      `xml:"console"`
	RNG        *rngXML        `xml:"rng,omitempty"`
	Balloon    *struct {
		Model string `xml:"model,attr"`
	} `xml:"memballoon,omitempty"`
}

type diskXML struct {
	Type   string     `xml:"type,attr"`
	Device string     `xml:"device,attr"`
	Driver *driverXML `xml:"driver,omitempty"`
	Source struct {
		File string `xml:"file,attr,omitempty"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr,omitempty"`
	} `xml:"target"`
	Serial   string    `xml:"serial,omitempty"`
	ReadOnly *struct{} `xml:"readonly"`
}

type driverXML struct {
	Name  string `xml:"name,attr"`
	Type  string `xml:"type,attr"`
	Cache string `xml:"cache,attr,omitempty"`
}

type interfaceXML struct {
	Type   string  `xml:"type,attr"`
	MAC    *macXML `xml:"mac,omitempty"`
	Source struct {
		Network string `xml:"network,attr,omitempty"`
	} `xml:"source"`
	Model *modelXML `xml:"model,omitempty"`
}

type macXML struct {
	Address string `xml:"address,attr"`
}

type modelXML struct {
	Type string `xml:"type,attr"`
}

type charXML struct {
	Type   string         `xml:"type,attr"`
	Log    *logXML        `xml:"log,omitempty"`
	Target *charTargetXML `xml:"target,omitempty"`
}

type logXML struct {
	File   string `xml:"file,attr"`
	Append string `xml:"append,attr,omitempty"`
}

type charTargetXML struct {
	Type string `xml:"type,attr,omitempty"`
	Port *int   `xml:"port,attr"`
}

type rngXML struct {
	Model   string `xml:"model,attr"`
	Backend struct {
		Model string `xml:"model,attr"`
		Value string `xml:",chardata"`
	} `xml:"backend"`
}

// networkXML is the part of libvirt's network XML k2 writes and reads.
type networkXML struct {
	XMLName  xml.Name       `xml:"network"`
	Name     string         `xml:"name"`
	Metadata *metadata      `xml:"metadata"`
	Forward  *forwardXML    `xml:"forward,omitempty"`
	Bridge   *bridgeXML     `xml:"bridge,omitempty"`
	IPs      []networkIPXML `xml:"ip"`
}

type forwardXML struct {
	Mode string `xml:"mode,attr"`
}

type bridgeXML struct {
	Name  string `xml:"name,attr,omitempty"`
	STP   string `xml:"stp,attr,omitempty"`
	Delay string `xml:"delay,attr,omitempty"`
}

type networkIPXML struct {
	Family  string   `xml:"family,attr,omitempty"`
	Address string   `xml:"address,attr"`
	Netmask string   `xml:"netmask,attr,omitempty"`
	Prefix  string   `xml:"prefix,attr,omitempty"`
	DHCP    *dhcpXML `xml:"dhcp,omitempty"`
}

type dhcpXML struct {
	Ranges []rangeXML `xml:"range"`
}

type rangeXML struct {
	Start string `xml:"start,attr"`
	End   string `xml:"end,attr"`
}

// poolXML is the part of a storage pool's XML k2 reads.
type poolXML struct {
	Type   string `xml:"type,attr"`
	Name   string `xml:"name"`
	Target struct {
		Path string `xml:"path"`
	} `xml:"target"`
}

// volumeXML describes a volume to create.
type volumeXML struct {
	XMLName    xml.Name `xml:"volume"`
	Name       string   `xml:"name"`
	Capacity   sizeXML  `xml:"capacity"`
	Allocation sizeXML  `xml:"allocation"`
	Target     struct {
		Format struct {
			Type string `xml:"type,attr"`
		} `xml:"format"`
		Permissions struct {
			Mode string `xml:"mode"`
		} `xml:"permissions"`
	} `xml:"target"`
}

func volumeSpec(name string, capacity int64) string {
	v := volumeXML{Name: name, Capacity: sizeXML{Unit: "bytes", Value: uint64(capacity)}, Allocation: sizeXML{Unit: "bytes"}}
	v.Target.Format.Type = "raw"
	v.Target.Permissions.Mode = "0644"
	return mustXML(v)
}

func mustXML(v any) string {
	b, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("marshalling %T: %v", v, err)) // only fixed struct types reach here
	}
	return string(b)
}

// parseDomain reads a domain's XML.
func parseDomain(s string) (*domainXML, error) {
	var d domainXML
	if err := xml.NewDecoder(strings.NewReader(s)).Decode(&d); err != nil {
		return nil, fmt.Errorf("reading the domain XML: %w", err)
	}
	return &d, nil
}

// meta returns the k2 metadata of a domain, or nil.
func (d *domainXML) meta() *machineMeta {
	if d.Metadata == nil {
		return nil
	}
	return d.Metadata.Machine
}

func parseNetwork(s string) (*networkXML, error) {
	var n networkXML
	if err := xml.NewDecoder(strings.NewReader(s)).Decode(&n); err != nil {
		return nil, fmt.Errorf("reading the network XML: %w", err)
	}
	return &n, nil
}

func parsePool(s string) (*poolXML, error) {
	var p poolXML
	if err := xml.NewDecoder(strings.NewReader(s)).Decode(&p); err != nil {
		return nil, fmt.Errorf("reading the storage pool XML: %w", err)
	}
	return &p, nil
}
