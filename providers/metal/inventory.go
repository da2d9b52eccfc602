package metal

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Inventory is the servers k2 may install, read from the YAML file named
// by the provider's "inventory" setting (docs/metal.md):
//
//	machines:
//	  - name: rack1-u1
//	    bmc: {endpoint: "https://10.0.0.21", username: admin, passwordEnv: BMC_PASSWORD}
//	    mac: "52:54:00:12:34:56"
//	    arch: amd64
//	    role: control-plane        # optional hint
//
// Credentials are references only (passwordEnv or passwordFile): the file
// and k2's state never hold a password.
type Inventory struct {
	Machines []Server `yaml:"machines" json:"machines"`
	// Path is the file it was read from.
	Path string `yaml:"-" json:"path"`
}

// Server is one physical machine of the inventory.
type Server struct {
	Name string `yaml:"name" json:"name"`
	BMC  BMC    `yaml:"bmc" json:"bmc"`
	// MAC is the address of the NIC the server network-boots from.
	MAC  string `yaml:"mac" json:"mac"`
	Arch string `yaml:"arch" json:"arch"`
	// CPU and Memory ("64Gi", "512Mi" or bytes) are what the server has;
	// a machine asking for more is not placed on it. Optional.
	CPU    int    `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	Memory string `yaml:"memory,omitempty" json:"memory,omitempty"`
	// Role ("control-plane" or "worker") and Pool are placement hints: a
	// server with a hint only takes machines that match it.
	Role string `yaml:"role,omitempty" json:"role,omitempty"`
	Pool string `yaml:"pool,omitempty" json:"pool,omitempty"`
	// Disk is the install disk for OS talos (default /dev/sda).
	Disk string `yaml:"disk,omitempty" json:"disk,omitempty"`
	// Address is the server's IP on the boot network when it is fixed (a
	// DHCP reservation): OS talos reaches its API there, and the first
	// control plane's is the cluster endpoint unless talosEndpoint is set.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Line is the line of the entry in the inventory file.
	Line int `yaml:"-" json:"-"`
}

// BMC is how to reach a server's baseboard management controller.
type BMC struct {
	// Endpoint is the Redfish service's base URL (https://10.0.0.21).
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	Username string `yaml:"username" json:"username"`
	// PasswordEnv names an environment variable holding the password;
	// PasswordFile is a file holding it. Exactly one is set.
	PasswordEnv  string `yaml:"passwordEnv,omitempty" json:"passwordEnv,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty" json:"passwordFile,omitempty"`
	// Insecure skips TLS verification (BMCs with self-signed certificates).
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
	// System is the ComputerSystem's id or path when the BMC manages more
	// than one (a chassis manager); default: its only system.
	System string `yaml:"system,omitempty" json:"system,omitempty"`
	// BasicAuth uses HTTP basic auth instead of a Redfish session.
	BasicAuth bool `yaml:"basicAuth,omitempty" json:"basicAuth,omitempty"`
	// Password is refused: it is here to give a clear error.
	Password string `yaml:"password,omitempty" json:"-"`
}

// ErrInventory marks an invalid inventory file.
var ErrInventory = errors.New("invalid inventory")

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// LoadInventory reads and checks an inventory file. Every problem is
// reported at once, each as "FILE:LINE: machines[i] (name): ...".
func LoadInventory(path string) (*Inventory, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading inventory: %w", err)
	}
	return ParseInventory(path, b)
}

// ParseInventory is LoadInventory of b, read from path.
func ParseInventory(path string, b []byte) (*Inventory, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrInventory, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	inv := &Inventory{Path: path}
	if err := dec.Decode(inv); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n"), "\n  ", "\n")
		return nil, fmt.Errorf("%s: %w: %s", path, ErrInventory, strings.TrimSpace(msg))
	}
	// Lines of each machine entry, for messages.
	if len(doc.Content) == 1 {
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "machines" {
				for j, n := range m.Content[i+1].Content {
					if j < len(inv.Machines) {
						inv.Machines[j].Line = n.Line
					}
				}
			}
		}
	}
	var errs []error
	bad := func(i int, s Server, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: machines[%d] (%s): %s", path, s.Line, i, s.Name, fmt.Sprintf(format, args...)))
	}
	if len(inv.Machines) == 0 {
		errs = append(errs, fmt.Errorf("%s: no machines listed; see docs/metal.md for the inventory's shape", path))
	}
	names, macs := map[string]int{}, map[string]int{}
	for i := range inv.Machines {
		s := &inv.Machines[i]
		if !nameRE.MatchString(s.Name) {
			bad(i, *s, "name %q must be a DNS label (lower-case letters, digits, '-' and '.')", s.Name)
		} else if j, dup := names[s.Name]; dup {
			bad(i, *s, "name %q is also machines[%d]", s.Name, j)
		}
		names[s.Name] = i
		if u, err := url.Parse(s.BMC.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(i, *s, "bmc.endpoint %q must be an http(s) URL such as https://10.0.0.21", s.BMC.Endpoint)
		}
		if s.BMC.Username == "" {
			bad(i, *s, "bmc.username is missing")
		}
		switch {
		case s.BMC.Password != "":
			bad(i, *s, "bmc.password: inline passwords are refused; put it in an environment variable (passwordEnv) or a file (passwordFile)")
		case s.BMC.PasswordEnv == "" && s.BMC.PasswordFile == "":
			bad(i, *s, "bmc: set passwordEnv (an environment variable) or passwordFile (a file) for the password")
		case s.BMC.PasswordEnv != "" && s.BMC.PasswordFile != "":
			bad(i, *s, "bmc: set passwordEnv or passwordFile, not both")
		}
		if hw, err := net.ParseMAC(s.MAC); err != nil || len(hw) != 6 {
			bad(i, *s, "mac %q is not a MAC address such as 52:54:00:12:34:56", s.MAC)
		} else {
			s.MAC = hw.String()
			if j, dup := macs[s.MAC]; dup {
				bad(i, *s, "mac %s is also machines[%d]'s", s.MAC, j)
			}
			macs[s.MAC] = i
		}
		if s.Disk != "" && (!strings.HasPrefix(s.Disk, "/dev/") || strings.ContainsAny(s.Disk, " \t")) {
			// Talos's machinery takes any string as the install disk and
			// fails only on the machine: checked here.
			bad(i, *s, "disk %q is not a device path such as /dev/sda or /dev/nvme0n1", s.Disk)
		}
		if s.Address != "" && net.ParseIP(s.Address) == nil {
			bad(i, *s, "address %q is not an IP address such as 10.0.0.31", s.Address)
		}
		switch s.Arch {
		case "amd64", "arm64":
		case "":
			bad(i, *s, "arch is missing: amd64 or arm64")
		default:
			bad(i, *s, "arch %q: use amd64 or arm64", s.Arch)
		}
		switch s.Role {
		case "", "control-plane", "worker":
		default:
			bad(i, *s, "role %q: use control-plane or worker (or leave it out)", s.Role)
		}
		if _, err := parseBytes(s.Memory); err != nil {
			bad(i, *s, "memory %q: %v", s.Memory, err)
		}
		if s.CPU < 0 {
			bad(i, *s, "cpu %d must not be negative", s.CPU)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w:\n%w", ErrInventory, errors.Join(errs...))
	}
	return inv, nil
}

// Server returns the server named name.
func (inv *Inventory) Server(name string) (Server, bool) {
	for _, s := range inv.Machines {
		if s.Name == name {
			return s, true
		}
	}
	return Server{}, false
}

// Password resolves the server's BMC password from the environment or its
// file, at the moment it is needed.
func (s Server) Password() (string, error) {
	if s.BMC.PasswordEnv != "" {
		v, ok := os.LookupEnv(s.BMC.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("BMC password of %s: environment variable %s is not set", s.Name, s.BMC.PasswordEnv)
		}
		return v, nil
	}
	b, err := os.ReadFile(s.BMC.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("BMC password of %s: %w", s.Name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// MemoryBytes is Memory in bytes; 0 when not given.
func (s Server) MemoryBytes() int64 {
	n, _ := parseBytes(s.Memory)
	return n
}

func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	for suf, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12} {
		if strings.HasSuffix(s, suf) && (len(suf) == 2 || !strings.HasSuffix(s, "i")) {
			mult, s = m, strings.TrimSuffix(s, suf)
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("use a size such as 64Gi, 512Mi or a number of bytes")
	}
	return n * mult, nil
}
