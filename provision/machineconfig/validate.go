package machineconfig

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"k2.dev/k2/internal/join"
)

// Problem is one thing wrong with a config: the field's path
// (controlPlane.port, network.interfaces[0].addresses[1]) and, when the
// config was parsed from a document, its line.
type Problem struct {
	Path string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Path, p.Msg)
	}
	return p.Path + ": " + p.Msg
}

// InvalidError lists every problem of a config.
type InvalidError struct{ Problems []Problem }

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString("invalid machine config: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

type checker struct {
	c        *Config
	problems []Problem
	warnings []string
}

func (k *checker) fail(path, format string, args ...any) {
	k.problems = append(k.problems, Problem{Path: path, Line: k.c.lines[path], Msg: fmt.Sprintf(format, args...)})
}

func (k *checker) warn(path, format string, args ...any) {
	p := Problem{Path: path, Line: k.c.lines[path], Msg: fmt.Sprintf(format, args...)}
	k.warnings = append(k.warnings, p.String())
}

// Validate checks the config and returns warnings and an *InvalidError
// naming every problem (never the secrets' values).
func (c *Config) Validate() ([]string, error) {
	k := &checker{c: c}
	if c.APIVersion != APIVersion {
		k.fail("apiVersion", "%q: want %s", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		k.fail("kind", "%q: want %s", c.Kind, Kind)
	}
	switch c.Role {
	case RoleWorker, RoleControlPlane:
	case "":
		k.fail("role", "missing: give %s or %s", RoleWorker, RoleControlPlane)
	default:
		k.fail("role", "%q: want %s or %s", c.Role, RoleWorker, RoleControlPlane)
	}
	if c.NodeName != "" {
		for _, m := range validation.IsDNS1123Subdomain(c.NodeName) {
			k.fail("nodeName", "%q: %s", c.NodeName, m)
		}
	}
	for _, key := range sortedKeys(c.Labels) {
		for _, m := range validation.IsQualifiedName(key) {
			k.fail("labels", "key %q: %s", key, m)
		}
		for _, m := range validation.IsValidLabelValue(c.Labels[key]) {
			k.fail("labels."+key, "%q: %s", c.Labels[key], m)
		}
	}
	switch c.Runtime {
	case "", "kubelet", "auto", "sim":
	default:
		k.fail("runtime", "%q: want kubelet, auto or sim", c.Runtime)
	}
	var tokenHash string
	if c.Token != "" {
		t, err := join.Parse(c.Token)
		if err != nil {
			k.fail("token", "%v (the value is not shown)", err)
		} else {
			tokenHash = t.CAHash
		}
	}
	if c.CAHash != "" {
		if len(c.CAHash) != 64 || !isHex(c.CAHash) {
			k.fail("caHash", "%q: want the 64 hex characters of a SHA-256", c.CAHash)
		} else if tokenHash != "" && !strings.EqualFold(tokenHash, c.CAHash) {
			k.fail("caHash", "does not match the CA hash in token: the token is for another cluster")
		}
	}
	if c.Serves() {
		k.controlPlane(tokenHash)
	} else {
		if c.ControlPlane != nil && c.Role == RoleWorker {
			k.fail("controlPlane", "set on a worker: only a control-plane machine serves the cluster")
		}
		if c.Server == "" {
			k.fail("server", "missing: a machine that does not serve the cluster (no controlPlane.identity) joins the one at this URL")
		}
		if c.Token == "" {
			k.fail("token", "missing: a joining machine needs the cluster's join token (k2 token create)")
		}
	}
	if c.Server != "" {
		k.httpsURL("server", c.Server)
	}
	if c.JoinURL != "" {
		k.httpsURL("joinURL", c.JoinURL)
	}
	k.network()
	if d := c.DataDisk; d != nil {
		if d.Device == "" {
			k.fail("dataDisk.device", "missing: give a block device (/dev/vdb) or %q", DataDiskAuto)
		} else if d.Device != DataDiskAuto && !strings.HasPrefix(path.Clean(d.Device), "/dev/") {
			k.fail("dataDisk.device", "%q: want a block device under /dev or %q", d.Device, DataDiskAuto)
		}
		if d.Filesystem != "" && d.Filesystem != DefaultFilesystem {
			k.fail("dataDisk.filesystem", "%q: k2 OS makes only %s", d.Filesystem, DefaultFilesystem)
		}
	}
	if len(k.problems) > 0 {
		return k.warnings, &InvalidError{Problems: k.problems}
	}
	return k.warnings, nil
}

func (k *checker) controlPlane(tokenHash string) {
	c, cp := k.c, k.c.ControlPlane
	if c.Role != RoleControlPlane {
		k.fail("controlPlane.identity", "set on a %s: only a control-plane machine serves the cluster", c.Role)
	}
	if cp.Port != 0 && (cp.Port < 1 || cp.Port > 65535) {
		k.fail("controlPlane.port", "%d is not a port (1-65535)", cp.Port)
	}
	if cp.JoinPort != 0 && (cp.JoinPort < 1 || cp.JoinPort > 65535) {
		k.fail("controlPlane.joinPort", "%d is not a port (1-65535)", cp.JoinPort)
	}
	if c.Port() == c.JoinPort() {
		k.fail("controlPlane.joinPort", "%d is also the API port; give them different ports", c.JoinPort())
	}
	for i, s := range cp.TLSSANs {
		if net.ParseIP(s) == nil && len(validation.IsDNS1123Subdomain(strings.TrimPrefix(s, "*."))) > 0 {
			k.fail(fmt.Sprintf("controlPlane.tlsSANs[%d]", i), "%q is neither an IP address nor a DNS name", s)
		}
	}
	for _, f := range []struct{ path, v string }{{"controlPlane.serviceCIDR", cp.ServiceCIDR}, {"controlPlane.clusterCIDR", cp.ClusterCIDR}} {
		if _, _, err := net.ParseCIDR(f.v); f.v != "" && err != nil {
			k.fail(f.path, "%q is not a CIDR range", f.v)
		}
	}
	if c.Server != "" {
		k.warn("server", "ignored: this machine serves the cluster itself")
	}
	b, err := c.IdentityBytes()
	if err != nil {
		k.fail("controlPlane.identity", "not base64: %v", err)
		return
	}
	ca, err := identityCA(b)
	if err != nil {
		k.fail("controlPlane.identity", "%v; it must be the identity k2 deploy made", err)
		return
	}
	sum := sha256.Sum256(ca)
	h := hex.EncodeToString(sum[:])
	if tokenHash != "" && tokenHash != h {
		k.fail("token", "is for another cluster: its CA hash does not match the identity's CA")
	}
	if c.CAHash != "" && !strings.EqualFold(c.CAHash, h) {
		k.fail("caHash", "does not match the identity's CA")
	}
}

// CACert returns the cluster CA certificate (PEM) inside the identity.
func (c *Config) CACert() ([]byte, error) {
	b, err := c.IdentityBytes()
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("no controlPlane.identity")
	}
	return identityCA(b)
}

// identityCA returns pki/ca.crt from an identity, checking that the CA key
// is there too.
func identityCA(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("not a gzip'd tar: %w", err)
	}
	tr := tar.NewReader(zr)
	var ca []byte
	key := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading its tar: %w", err)
		}
		switch path.Clean(h.Name) {
		case "pki/ca.crt":
			if ca, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return nil, err
			}
		case "pki/ca.key":
			key = true
		}
	}
	if ca == nil || !key {
		return nil, errors.New("holds no cluster CA (pki/ca.crt and pki/ca.key)")
	}
	return ca, nil
}

func (k *checker) httpsURL(field, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		k.fail(field, "%q: want https://host:port", s)
		return
	}
	if u.Path != "" && u.Path != "/" {
		k.fail(field, "%q: want no path, just https://host:port", s)
	}
}

func (k *checker) network() {
	n := k.c.Network
	if n.Hostname != "" {
		for _, m := range validation.IsDNS1123Subdomain(n.Hostname) {
			k.fail("network.hostname", "%q: %s", n.Hostname, m)
		}
	}
	var names, macs []string
	for i, ifc := range n.Interfaces {
		p := fmt.Sprintf("network.interfaces[%d]", i)
		switch {
		case ifc.Name == "" && ifc.MAC == "":
			k.fail(p, "give name or mac")
		case ifc.Name != "" && ifc.MAC != "":
			k.fail(p, "give name or mac, not both")
		case ifc.Name != "":
			if slices.Contains(names, ifc.Name) {
				k.fail(p+".name", "%q is configured twice", ifc.Name)
			}
			names = append(names, ifc.Name)
		default:
			hw, err := net.ParseMAC(ifc.MAC)
			if err != nil {
				k.fail(p+".mac", "%q is not a MAC address", ifc.MAC)
			} else if slices.Contains(macs, hw.String()) {
				k.fail(p+".mac", "%q is configured twice", ifc.MAC)
			} else {
				macs = append(macs, hw.String())
			}
		}
		if ifc.DHCP && len(ifc.Addresses) > 0 {
			k.fail(p, "dhcp and addresses both set: choose one")
		}
		if !ifc.DHCP && len(ifc.Addresses) == 0 {
			k.fail(p, "neither dhcp nor addresses: set dhcp: true or give addresses")
		}
		for j, a := range ifc.Addresses {
			if _, _, err := net.ParseCIDR(a); err != nil {
				k.fail(fmt.Sprintf("%s.addresses[%d]", p, j), "%q: want an address with its prefix length, 10.0.0.5/24", a)
			}
		}
		if ifc.Gateway != "" && net.ParseIP(ifc.Gateway) == nil {
			k.fail(p+".gateway", "%q is not an IP address", ifc.Gateway)
		}
		if ifc.MTU != 0 && (ifc.MTU < 576 || ifc.MTU > 9216) {
			k.fail(p+".mtu", "%d: want 576-9216", ifc.MTU)
		}
	}
	for i, s := range n.Nameservers {
		if net.ParseIP(s) == nil {
			k.fail(fmt.Sprintf("network.nameservers[%d]", i), "%q is not an IP address", s)
		}
	}
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
