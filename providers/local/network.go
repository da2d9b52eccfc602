package local

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Network modes (config "network").
const (
	// NetworkAuto is netns where it can work (root, iproute2), else host.
	NetworkAuto = "auto"
	// NetworkNetns gives each machine its own network namespace, with a
	// veth to a bridge k2 creates; the host reaches them through the
	// bridge's address.
	NetworkNetns = "netns"
	// NetworkHost runs every machine on the host's network (no real pods:
	// agents use the simulated runtime).
	NetworkHost = "host"
)

// network is <stateDir>/network.json: the bridge all machines of this state
// directory share.
type network struct {
	Bridge  string `json:"bridge"`
	Subnet  string `json:"subnet"`  // a /24
	Gateway string `json:"gateway"` // the bridge's address: the host
}

// netnsUsable says why netns mode cannot work here, or "".
func netnsUsable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found on PATH (Debian: apt-get install iproute2 util-linux)"
		}
	}
	return ""
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// netnsName is a machine's network namespace (/run/netns/<name>).
func netnsName(stateDir, machine string) string {
	return "k2-" + shortHash(stateDir, 6) + "-" + machine
}

// hostNetnsName names the host's own network namespace, so agents inside
// machine namespaces can reach the host's loopback (registries on
// 127.0.0.1): /proc/1/ns/net is not always readable, a named one is.
func hostNetnsName(stateDir string) string { return "k2-" + shortHash(stateDir, 6) + "-host" }

// vethName is the host side of a machine's veth pair (at most 15 bytes).
func vethName(stateDir, machine string) string {
	return "k2v" + shortHash(stateDir+"/"+machine, 10)
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// ensureNetwork loads or creates the state directory's bridge. The /24 is
// derived from the state directory and moved on if the host already routes
// it.
func ensureNetwork(stateDir string) (*network, error) {
	path := filepath.Join(stateDir, "network.json")
	var n network
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &n); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		routes, _ := exec.Command("ip", "-4", "route", "show").Output()
		sum := sha256.Sum256([]byte(stateDir))
		h := binary.BigEndian.Uint16(sum[:2])
		for i := uint16(0); ; i++ {
			if i == 2000 {
				return nil, errors.New("no free 10.x.y.0/24 for the machines' bridge")
			}
			v := h + i*7
			subnet := fmt.Sprintf("10.%d.%d.0/24", 100+int(v>>8)%100, v&0xff)
			if !strings.Contains(string(routes), subnet) {
				n = network{Bridge: "k2br" + shortHash(stateDir, 8), Subnet: subnet,
					Gateway: strings.TrimSuffix(subnet, "0/24") + "1"}
				break
			}
		}
		b, _ := json.MarshalIndent(n, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return nil, err
		}
	}
	if !linkExists(n.Bridge) {
		if err := ipCmd("link", "add", n.Bridge, "type", "bridge"); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join("/run/netns", hostNetnsName(stateDir))); err != nil {
		if err := ipCmd("netns", "attach", hostNetnsName(stateDir), strconv.Itoa(os.Getpid())); err != nil {
			return nil, err
		}
	}
	if err := ipCmd("addr", "replace", n.Gateway+"/24", "dev", n.Bridge); err != nil {
		return nil, err
	}
	return &n, ipCmd("link", "set", n.Bridge, "up")
}

// removeNetwork deletes the bridge and its record.
func removeNetwork(stateDir string) {
	path := filepath.Join(stateDir, "network.json")
	var n network
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &n) == nil && n.Bridge != "" && linkExists(n.Bridge) {
		_ = ipCmd("link", "del", n.Bridge)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", hostNetnsName(stateDir))); err == nil {
		_ = ipCmd("netns", "del", hostNetnsName(stateDir))
	}
	_ = os.Remove(path)
}

// allocAddress picks the lowest address of the subnet (from .2) no other
// machine record holds.
func allocAddress(stateDir string, n *network, self string) (string, error) {
	used := map[string]bool{n.Gateway: true}
	entries, _ := os.ReadDir(filepath.Join(stateDir, "machines"))
	for _, e := range entries {
		if e.Name() == self {
			continue
		}
		if r, err := readRecord(machineDir(stateDir, e.Name())); err == nil && r.NetNS != "" && len(r.Addresses) > 0 {
			used[r.Addresses[0]] = true
		}
	}
	p := netip.MustParsePrefix(n.Subnet)
	for a := p.Addr().Next().Next(); p.Contains(a); a = a.Next() {
		if !used[a.String()] && a.As4()[3] != 255 {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("subnet %s is full", n.Subnet)
}

// ensureMachineNet creates a machine's namespace and veth and gives it
// addr with a default route through the bridge. Idempotent.
func ensureMachineNet(stateDir, machine, addr string, n *network) error {
	ns, veth := netnsName(stateDir, machine), vethName(stateDir, machine)
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
		if err := ipCmd("netns", "add", ns); err != nil {
			return err
		}
	}
	if !linkExists(veth) {
		if err := ipCmd("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"link", "set", veth, "master", n.Bridge, "up"},
		{"-n", ns, "addr", "replace", addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "route", "replace", "default", "via", n.Gateway},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	return nil
}

// removeMachineNet deletes a machine's namespace (its veth pair goes with
// it).
func removeMachineNet(stateDir, machine string) {
	ns := netnsName(stateDir, machine)
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
		_ = ipCmd("netns", "del", ns)
	}
	if v := vethName(stateDir, machine); linkExists(v) {
		_ = ipCmd("link", "del", v)
	}
}

// remainingMachines counts machine directories left in the state dir.
func remainingMachines(stateDir string) int {
	entries, _ := os.ReadDir(filepath.Join(stateDir, "machines"))
	return len(entries)
}

// NetworkNames are the names of what netns mode creates on the host for a
// state directory: network namespaces start with nsPrefix, the bridge is
// bridge, veths start with "k2v" (tests check that destroy removes them).
func NetworkNames(stateDir string) (nsPrefix, bridge string) {
	return "k2-" + shortHash(stateDir, 6) + "-", "k2br" + shortHash(stateDir, 8)
}
