package netboot_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"

	"k2.dev/k2/internal/netboot"
)

// inNetns runs f with this goroutine's thread in network namespace ns:
// the sockets f opens live there for good.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // a thread left in the test's namespace must not run anything else
		}
	}()
	f()
}

// TestProxyDHCPOnTheWire: on port 67 of a real interface — a veth pair in
// a network namespace this test makes (k2i16-<random>, removed after) —
// the proxy answers the broadcast DISCOVER of insomniacslk's nclient4 (a
// DHCP client nobody here wrote, on raw sockets from 0.0.0.0:68, as a PXE
// ROM sends) with a broadcast offer it accepts, and answers no client
// without the PXE vendor class.
func TestProxyDHCPOnTheWire(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces and port 67 need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	ns := fmt.Sprintf("k2i16-%06x", rand.IntN(1<<24))
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "link", "add", "pxe0", "type", "veth", "peer", "name", "pxe1")
	ip("-n", ns, "addr", "add", "10.16.0.1/24", "dev", "pxe0")
	ip("-n", ns, "link", "set", "pxe0", "up")
	ip("-n", ns, "link", "set", "pxe1", "up")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var srv *netboot.Server
	var client *nclient4.Client
	inNetns(t, ns, func() {
		var err error
		srv, err = netboot.Start(ctx, netboot.Options{HTTPAddr: "10.16.0.1:8081", TFTPAddr: "10.16.0.1:69", IPXEDir: t.TempDir(),
			DHCPAddr: "0.0.0.0:67", DHCPInterface: "pxe0"})
		if err != nil {
			t.Fatal(err)
		}
		if client, err = nclient4.New("pxe1", nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(1)); err != nil {
			t.Fatal(err)
		}
	})
	defer srv.Close()
	defer client.Close()
	mac := client.InterfaceAddr().String()
	if err := srv.Add(netboot.Machine{Name: "m0", MAC: mac, Kernel: "k", Initramfs: "i"}); err != nil {
		t.Fatal(err)
	}

	offer, err := client.DiscoverOffer(ctx,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	if err != nil {
		t.Fatalf("no proxy offer on the wire: %v (events %+v)", err, srv.Events())
	}
	got := fmt.Sprintf("%s yiaddr=%s siaddr=%s file=%s class=%s server=%s", offer.MessageType(), offer.YourIPAddr, offer.ServerIPAddr,
		offer.BootFileName, offer.ClassIdentifier(), offer.ServerIdentifier())
	if want := "OFFER yiaddr=0.0.0.0 siaddr=10.16.0.1 file=undionly.kpxe class=PXEClient server=10.16.0.1"; got != want {
		t.Errorf("offer %s\nwant  %s", got, want)
	}
	if p := waitProgress(t, srv, mac, func(p netboot.Progress) bool { return p.Stage == netboot.StageDHCP }); p.Stage != netboot.StageDHCP {
		t.Errorf("stage %q, want dhcp", p.Stage)
	}

	// A machine that is no PXE client (the same MAC, no option 60) gets
	// nothing from k2: its addresses are the site DHCP server's business.
	if o, err := client.DiscoverOffer(ctx); err == nil {
		t.Errorf("a non-PXE DISCOVER got an answer: %s", o.Summary())
	}
}
