package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// CNIBinDirs are where k2 looks for the CNI plugins (Debian's
// containernetworking-plugins installs to /usr/lib/cni).
var CNIBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

var cniPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// Preflight checks that this machine can run real pods and returns one
// line per problem, each saying what to install or change; none means the
// kubelet runtime can run. k2 is the path of the k2 binary (the shim is
// looked for beside it).
func Preflight(k2, nodeIP string) []string {
	var p []string
	if runtime.GOOS != "linux" {
		return []string{"real pods need Linux (this is " + runtime.GOOS + ")"}
	}
	if os.Geteuid() != 0 {
		p = append(p, "the kubelet runtime needs root (it mounts, makes cgroups and network namespaces): run k2 agent as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		p = append(p, "runc not found on PATH: install it (Debian: apt-get install runc)")
	}
	if _, err := shimDir(k2); err != nil {
		p = append(p, err.Error())
	}
	if dir := cniDir(); dir == "" {
		p = append(p, fmt.Sprintf("CNI plugins (%s) not found in %s: install them (Debian: apt-get install containernetworking-plugins)",
			strings.Join(cniPlugins, ", "), strings.Join(CNIBinDirs, " or ")))
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		p = append(p, "iptables-restore not found on PATH: Services need it (Debian: apt-get install iptables)")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		p = append(p, "no cgroup file system at /sys/fs/cgroup: mount cgroups (v1 or v2)")
	}
	if b, err := os.ReadFile("/proc/filesystems"); err == nil && !strings.Contains(string(b), "overlay") {
		p = append(p, "the kernel has no overlay file system: load the overlay module")
	}
	if nodeIP == "" {
		p = append(p, "no non-loopback IPv4 address: the kubelet needs one (logs and exec reach pods through it); give --node-ip")
	} else if ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "10250")); err != nil {
		p = append(p, fmt.Sprintf("the kubelet port %s:10250 is taken (another node on this network?): give each node its own network namespace (the local provider does) or address", nodeIP))
	} else {
		ln.Close()
	}
	return p
}

// shimDir is the directory holding the runc shim: k2's own directory
// first, then PATH.
func shimDir(k2 string) (string, error) {
	if k2 != "" {
		d := filepath.Dir(k2)
		if fi, err := os.Stat(filepath.Join(d, ShimBinary)); err == nil && fi.Mode()&0o111 != 0 {
			return d, nil
		}
	}
	if p, err := exec.LookPath(ShimBinary); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%s not found beside %s or on PATH: run `make build` (it builds bin/%s) or copy it beside k2", ShimBinary, k2, ShimBinary)
}

// cniDir is the first of CNIBinDirs holding every plugin k2 uses, or "".
func cniDir() string {
	for _, d := range CNIBinDirs {
		ok := true
		for _, p := range cniPlugins {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
				break
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

// cgroupV1 reports whether the host runs cgroup v1 (or hybrid): the
// kubelet then needs failCgroupV1: false.
func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return errors.Is(err, os.ErrNotExist)
}

// canLowerOOMScore reports whether this process has CAP_SYS_RESOURCE
// (bit 24 of CapEff); without it runc cannot give containers a negative
// oom_score_adj and containerd must clamp it.
func canLowerOOMScore() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			var caps uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &caps); err != nil {
				return false
			}
			return caps&(1<<24) != 0
		}
	}
	return false
}

// DefaultNodeIP is the source address of the default route's interface,
// else the first non-loopback IPv4 address; "" if there is none.
func DefaultNodeIP() string {
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil { // no packet is sent
		defer c.Close()
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsLoopback() && !a.IP.IsUnspecified() {
			return a.IP.String()
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}
