package providertest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// memProvider keeps machines in memory (shared by all instances through
// store, as a cloud would be). With lie set it skips its capability checks,
// which the kit must catch.
type memProvider struct {
	sdk.UnimplementedProvider
	store *memStore
	lie   bool
}

type memStore struct {
	mu       sync.Mutex
	machines map[string]sdk.Machine // by name
}

var memCaps = sdk.Capabilities{
	Architectures: []string{"amd64"}, CustomSizes: true, MaxMachines: 5,
	BootstrapMethods: []string{sdk.BootstrapUserData},
}

func (p *memProvider) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "mem", Capabilities: memCaps}, nil
}

func (p *memProvider) check(ms []sdk.MachineRequest, b *sdk.Bootstrap) sdk.Diagnostics {
	if p.lie {
		return nil
	}
	return sdk.CheckMachines(memCaps, ms, b)
}

func (p *memProvider) Validate(_ context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	return &sdk.ValidateResponse{Diagnostics: p.check(req.Machines, req.Bootstrap)}, nil
}

func (p *memProvider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	if ds := p.check(req.Machines, &req.Bootstrap); ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	var out []sdk.Machine
	for _, m := range req.Machines {
		got, ok := p.store.machines[m.Name]
		if !ok {
			got = sdk.Machine{ID: "mem-" + m.Name, Name: m.Name, RequestID: req.RequestID, State: sdk.StateRunning, Arch: "amd64"}
			p.store.machines[m.Name] = got
		}
		out = append(out, got)
	}
	return &sdk.CreateResponse{Machines: out}, nil
}

func (p *memProvider) List(_ context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	var out []sdk.Machine
	for _, m := range p.store.machines {
		if req.RequestID == "" || m.RequestID == req.RequestID {
			out = append(out, m)
		}
	}
	return &sdk.ListResponse{Machines: out}, nil
}

func (p *memProvider) Delete(_ context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	for _, id := range req.MachineIDs {
		delete(p.store.machines, strings.TrimPrefix(id, "mem-"))
	}
	return &sdk.DeleteResponse{Deleted: req.MachineIDs}, nil
}

func run(t *testing.T, lie bool) {
	store := &memStore{machines: map[string]sdk.Machine{}}
	providertest.Run(t, func() sdk.Provider { return &memProvider{store: store, lie: lie} })
}

func TestHonestProviderPasses(t *testing.T) { run(t, false) }

// TestDishonestProviderFails runs the kit against a provider that accepts
// what it does not advertise, in a child process, and expects it to fail
// for that reason.
func TestDishonestProviderFails(t *testing.T) {
	if os.Getenv("K2_PROVIDERTEST_DISHONEST") == "1" {
		run(t, true)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDishonestProviderFails$", "-test.v")
	cmd.Env = append(os.Environ(), "K2_PROVIDERTEST_DISHONEST=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the kit passed a dishonest provider:\n%s", out)
	}
	for _, want := range []string{
		"--- FAIL: TestDishonestProviderFails/BadRequests/UnadvertisedArch",
		"Validate accepted a bad request (UnadvertisedArch)",
		"Create accepted a bad request (UnadvertisedBootstrap)",
		"Create accepted a bad request (UnadvertisedOS)",
		"--- PASS: TestDishonestProviderFails/Lifecycle",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kit output lacks %q", want)
		}
	}
	if t.Failed() {
		fmt.Println(string(out))
	}
}
