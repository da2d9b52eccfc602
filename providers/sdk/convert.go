package sdk

import (
	pb "k2.dev/k2/providers/sdk/internal/proto"
)

// Converters between the plain Go types and the generated protobuf ones.
// Keep them total: every field of a type appears in both directions.

func hostToPB(h HostCapabilities) *pb.HostCapabilities {
	return &pb.HostCapabilities{BootstrapMethods: h.BootstrapMethods, ProgressEvents: h.ProgressEvents, ConsoleStreaming: h.ConsoleStreaming}
}

func hostFromPB(h *pb.HostCapabilities) HostCapabilities {
	if h == nil {
		return HostCapabilities{}
	}
	return HostCapabilities{BootstrapMethods: h.BootstrapMethods, ProgressEvents: h.ProgressEvents, ConsoleStreaming: h.ConsoleStreaming}
}

func capsToPB(c Capabilities) *pb.Capabilities {
	out := &pb.Capabilities{
		Architectures: c.Architectures, MaxMachines: c.MaxMachines, BootstrapMethods: c.BootstrapMethods,
		Power: c.Power, Console: c.Console, PersistentDisks: c.PersistentDisks, CustomSizes: c.CustomSizes,
		OperatingSystems: c.OperatingSystems,
	}
	for _, k := range c.Classes {
		out.Classes = append(out.Classes, &pb.MachineClass{Name: k.Name, Cpu: k.CPU, MemoryBytes: k.MemoryBytes, DiskBytes: k.DiskBytes})
	}
	return out
}

func capsFromPB(c *pb.Capabilities) Capabilities {
	if c == nil {
		return Capabilities{}
	}
	out := Capabilities{
		Architectures: c.Architectures, MaxMachines: c.MaxMachines, BootstrapMethods: c.BootstrapMethods,
		Power: c.Power, Console: c.Console, PersistentDisks: c.PersistentDisks, CustomSizes: c.CustomSizes,
		OperatingSystems: c.OperatingSystems,
	}
	for _, k := range c.Classes {
		out.Classes = append(out.Classes, MachineClass{Name: k.Name, CPU: k.Cpu, MemoryBytes: k.MemoryBytes, DiskBytes: k.DiskBytes})
	}
	return out
}

func schemaToPB(s []ConfigField) []*pb.ConfigField {
	var out []*pb.ConfigField
	for _, f := range s {
		out = append(out, &pb.ConfigField{Name: f.Name, Type: f.Type, Description: f.Description, Required: f.Required, Secret: f.Secret, Default: f.Default})
	}
	return out
}

func schemaFromPB(s []*pb.ConfigField) []ConfigField {
	var out []ConfigField
	for _, f := range s {
		out = append(out, ConfigField{Name: f.Name, Type: f.Type, Description: f.Description, Required: f.Required, Secret: f.Secret, Default: f.Default})
	}
	return out
}

func diagsToPB(ds Diagnostics) []*pb.Diagnostic {
	var out []*pb.Diagnostic
	for _, d := range ds {
		out = append(out, &pb.Diagnostic{Severity: d.Severity, Summary: d.Summary, Detail: d.Detail, Path: d.Path})
	}
	return out
}

func diagsFromPB(ds []*pb.Diagnostic) Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		out = append(out, Diagnostic{Severity: d.Severity, Summary: d.Summary, Detail: d.Detail, Path: d.Path})
	}
	return out
}

func machineReqsToPB(ms []MachineRequest) []*pb.MachineRequest {
	var out []*pb.MachineRequest
	for _, m := range ms {
		out = append(out, &pb.MachineRequest{
			Name: m.Name, Role: m.Role, Pool: m.Pool, Arch: m.Arch, Class: m.Class,
			Cpu: m.CPU, MemoryBytes: m.MemoryBytes, DiskBytes: m.DiskBytes, Labels: m.Labels,
		})
	}
	return out
}

func machineReqsFromPB(ms []*pb.MachineRequest) []MachineRequest {
	var out []MachineRequest
	for _, m := range ms {
		out = append(out, MachineRequest{
			Name: m.Name, Role: m.Role, Pool: m.Pool, Arch: m.Arch, Class: m.Class,
			CPU: m.Cpu, MemoryBytes: m.MemoryBytes, DiskBytes: m.DiskBytes, Labels: m.Labels,
		})
	}
	return out
}

func bootstrapToPB(b *Bootstrap) *pb.Bootstrap {
	if b == nil {
		return nil
	}
	return &pb.Bootstrap{Method: b.Method, ServerUrl: b.ServerURL, JoinToken: b.JoinToken, UserData: b.UserData, Command: b.Command, Env: b.Env,
		Os: b.OS, OsVersion: b.OSVersion, KubernetesVersion: b.KubernetesVersion}
}

func bootstrapFromPB(b *pb.Bootstrap) *Bootstrap {
	if b == nil {
		return nil
	}
	return &Bootstrap{Method: b.Method, ServerURL: b.ServerUrl, JoinToken: b.JoinToken, UserData: b.UserData, Command: b.Command, Env: b.Env,
		OS: b.Os, OSVersion: b.OsVersion, KubernetesVersion: b.KubernetesVersion}
}

func machinesToPB(ms []Machine) []*pb.Machine {
	var out []*pb.Machine
	for _, m := range ms {
		out = append(out, &pb.Machine{
			Id: m.ID, Name: m.Name, RequestId: m.RequestID, State: m.State, Role: m.Role, Pool: m.Pool,
			Arch: m.Arch, Class: m.Class, Cpu: m.CPU, MemoryBytes: m.MemoryBytes,
			Addresses: m.Addresses, Labels: m.Labels, Message: m.Message,
		})
	}
	return out
}

func machinesFromPB(ms []*pb.Machine) []Machine {
	var out []Machine
	for _, m := range ms {
		out = append(out, Machine{
			ID: m.Id, Name: m.Name, RequestID: m.RequestId, State: m.State, Role: m.Role, Pool: m.Pool,
			Arch: m.Arch, Class: m.Class, CPU: m.Cpu, MemoryBytes: m.MemoryBytes,
			Addresses: m.Addresses, Labels: m.Labels, Message: m.Message,
		})
	}
	return out
}
