package node

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
	"sigs.k8s.io/yaml"
)

// TestContainerdConfigLoads renders the node's containerd config and loads
// it with containerd's own loader; the CNI template renders to a valid
// conflist for a pod CIDR.
func TestContainerdConfigLoads(t *testing.T) {
	p := newContainerdPaths(t.TempDir())
	p.State, p.Socket = filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "c.sock")
	if err := writeContainerdConfig(p, "k2.dev/pause:3.10", []string{"/usr/lib/cni"}, true); err != nil {
		t.Fatal(err)
	}
	var cfg srvconfig.Config
	if err := srvconfig.LoadConfig(context.Background(), p.Config, &cfg); err != nil {
		t.Fatalf("containerd cannot load %s: %v", p.Config, err)
	}
	if cfg.Version != 3 || cfg.Root != p.Root || cfg.GRPC.Address != p.Socket {
		t.Errorf("loaded version %d root %q socket %q", cfg.Version, cfg.Root, cfg.GRPC.Address)
	}
	raw, _ := os.ReadFile(p.Config)
	for _, want := range []string{`restrict_oom_score_adj = true`, `sandbox = "k2.dev/pause:3.10"`, `bin_dirs = ["/usr/lib/cni"]`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("config lacks %s:\n%s", want, raw)
		}
	}
	tmpl, err := template.ParseFiles(filepath.Join(filepath.Dir(p.CNIConf), "template.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	data := struct {
		PodCIDR       string
		PodCIDRRanges []string
		Routes        []string
	}{"10.42.3.0/24", []string{"10.42.3.0/24"}, []string{"0.0.0.0/0"}}
	if err := tmpl.Execute(&out, data); err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Type string
			IPAM struct {
				DataDir string
				Ranges  [][]struct{ Subnet string }
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &conf); err != nil {
		t.Fatalf("rendered CNI config is not JSON: %v\n%s", err, out.String())
	}
	if len(conf.Plugins) != 3 || conf.Plugins[0].Type != "bridge" || conf.Plugins[0].IPAM.Ranges[0][0].Subnet != "10.42.3.0/24" {
		t.Errorf("CNI config: %+v", conf)
	}
	// Nodes on one host must not share host-local's reservations.
	if conf.Plugins[0].IPAM.DataDir != p.IPAM || !strings.HasPrefix(p.IPAM, filepath.Dir(p.Config)) {
		t.Errorf("host-local dataDir %q, want the node's own %q", conf.Plugins[0].IPAM.DataDir, p.IPAM)
	}
}

// TestKubeletConfigValidates writes the kubelet configuration k2 makes and
// loads and validates it the way the kubelet does.
func TestKubeletConfigValidates(t *testing.T) {
	o := &Options{DataDir: t.TempDir(), NodeName: "w1", NodeIP: "10.1.2.3", MaxPods: 110}
	p := newContainerdPaths(o.DataDir)
	b, err := yaml.Marshal(kubeletConfig(o, p, "/tmp/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(o.DataDir, "kubelet.yaml")
	os.WriteFile(f, b, 0o644)
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, f)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := loader.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		t.Fatalf("kubelet refuses k2's configuration: %v\n%s", err, b)
	}
	if kc.CgroupRoot != "/k2/w1" || kc.ClusterDNS[0] != DNSAddress || kc.ContainerRuntimeEndpoint != "unix://"+p.Socket {
		t.Errorf("cgroupRoot %q clusterDNS %v endpoint %q", kc.CgroupRoot, kc.ClusterDNS, kc.ContainerRuntimeEndpoint)
	}
	// Each node keeps its pod logs in its data dir: a kubelet's garbage
	// collection removes the log directories of pods it does not know.
	if want := filepath.Join(o.DataDir, "logs", "pods"); kc.PodLogsDir != want {
		t.Errorf("podLogsDir %q, want %q", kc.PodLogsDir, want)
	}
	if cgroupV1() && kc.FailCgroupV1 {
		t.Error("cgroup v1 host but failCgroupV1 is true: the kubelet would refuse to start")
	}
}

func TestKubeletDirShortForLongDataDirs(t *testing.T) {
	short := newContainerdPaths("/tmp/n1")
	if short.Kubelet != "/tmp/n1/kubelet" {
		t.Errorf("short data dir: %s", short.Kubelet)
	}
	long := newContainerdPaths("/tmp/" + strings.Repeat("x", 60) + "/data")
	if !strings.HasPrefix(long.Kubelet, "/var/lib/k2/kubelet-") || len(long.Kubelet)+len("/pod-resources/1234567890") > 100 {
		t.Errorf("long data dir: kubelet dir %s", long.Kubelet)
	}
	if len(long.Socket) > 100 {
		t.Errorf("containerd socket path %d bytes: %s", len(long.Socket), long.Socket)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134y`: `/x\y`, `/bad\09`: `/bad\09`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
