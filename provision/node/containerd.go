package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"k2.dev/k2/internal/memtrim"

	// Every plugin a CRI node needs: snapshotters, the runc runtime, CRI.
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

// ShimBinary is the runc shim containerd starts for every pod. It must be
// its own executable (a shim served by the k2 binary fails with
// "ttrpc: closed"); `make build` puts it beside k2.
const ShimBinary = "containerd-shim-runc-v2"

// CRINamespace is the containerd namespace the kubelet's pods live in.
const CRINamespace = "k8s.io"

// Daemon runs the containerd daemon compiled into k2 with containerd's own
// command line (`k2 containerd --config FILE`); it returns when the daemon
// stops (SIGTERM or SIGINT).
//
// It hands back the start-up memory of the k2 executable after 15 s and 45 s
// (memtrim: containerd runs the initialisers of every part of k2 too) and
// keeps the heap small while idle (memtrim.GCPolicy).
func Daemon(ctx context.Context, args []string) error {
	hctx, stop := context.WithCancel(ctx)
	var helpers sync.WaitGroup
	helpers.Go(func() { memtrim.ReleaseAfter(hctx, nil, 15*time.Second, 30*time.Second) })
	helpers.Go(func() { memtrim.DefaultGCPolicy.Run(hctx) })
	err := command.App().Run(ctx, append([]string{"containerd"}, args...))
	stop()
	helpers.Wait()
	return err
}

// containerdPaths are one node's containerd directories. Sockets and
// state live under a short per-node directory in /run, because a unix
// socket path is limited to 107 bytes and data dirs can be long.
type containerdPaths struct {
	Root, State, Socket, Config, CNIConf, Hosts, Log string
	// IPAM is host-local's store of the node's pod addresses, and PodLogs
	// the kubelet's pod log directory: each node has its own, since a
	// kubelet's garbage collection removes the log directories of pods it
	// does not know (every other node's) and nodes of one host must not
	// share address reservations.
	IPAM, PodLogs string
	// Kubelet is the kubelet's root dir: <data-dir>/kubelet, or for a long
	// data dir /var/lib/k2/kubelet-<hash> (the kubelet makes unix sockets
	// under it, e.g. pod-resources/<n>, limited to 107 bytes).
	Kubelet string
}

func newContainerdPaths(dataDir string) containerdPaths {
	sum := sha256.Sum256([]byte(dataDir))
	run := filepath.Join("/run/k2", hex.EncodeToString(sum[:6]))
	return containerdPaths{
		Root:    filepath.Join(dataDir, "containerd"),
		State:   filepath.Join(run, "containerd"),
		Socket:  filepath.Join(run, "containerd.sock"),
		Config:  filepath.Join(dataDir, "containerd.toml"),
		CNIConf: filepath.Join(dataDir, "cni", "net.d"),
		Hosts:   filepath.Join(dataDir, "containerd", "certs.d"),
		Log:     filepath.Join(dataDir, "logs", "containerd.log"),
		IPAM:    filepath.Join(dataDir, "cni", "networks"),
		PodLogs: filepath.Join(dataDir, "logs", "pods"),
		Kubelet: kubeletDir(dataDir, hex.EncodeToString(sum[:6])),
	}
}

func kubeletDir(dataDir, hash string) string {
	d := filepath.Join(dataDir, "kubelet")
	if len(d) <= 48 {
		return d
	}
	return filepath.Join("/var/lib/k2", "kubelet-"+hash)
}

// cniTemplate is the CNI config containerd writes once the kubelet hands it
// the node's pod CIDR: a bridge with host-local addresses from that CIDR
// (kept in the node's own IPAM_DIR),
// no masquerade (kube-proxy owns NAT), hairpin so a pod reaches itself
// through its Service.
const cniTemplate = `{
  "cniVersion": "1.0.0",
  "name": "k2",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "k2pods0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": IPAM_DIR,
        "ranges": [{{range $i, $r := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$r}}"}]{{end}}],
        "routes": [{{range $i, $r := .Routes}}{{if $i}}, {{end}}{"dst": "{{$r}}"}{{end}}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`

var containerdConfig = template.Must(template.New("containerd").Parse(`# Written by k2 agent; rewritten at every start.
version = 3
root = {{printf "%q" .P.Root}}
state = {{printf "%q" .P.State}}

[grpc]
  address = {{printf "%q" .P.Socket}}

[ttrpc]
  address = {{printf "%q" (print .P.Socket ".ttrpc")}}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {{printf "%q" .Sandbox}}
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = {{printf "%q" .P.Hosts}}

[plugins.'io.containerd.cri.v1.runtime']
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj; clamp instead.
  restrict_oom_score_adj = {{.RestrictOOM}}
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [{{range $i, $d := .CNIBinDirs}}{{if $i}}, {{end}}{{printf "%q" $d}}{{end}}]
    conf_dir = {{printf "%q" .P.CNIConf}}
    conf_template = {{printf "%q" .Template}}
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`))

// writeContainerdConfig writes the node's containerd config and CNI
// template.
func writeContainerdConfig(p containerdPaths, sandbox string, cniBinDirs []string, restrictOOM bool) error {
	for _, d := range []string{p.Root, p.State, p.CNIConf, p.Hosts, filepath.Dir(p.Log)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	tmpl := filepath.Join(filepath.Dir(p.CNIConf), "template.conflist")
	ipam, _ := json.Marshal(p.IPAM)
	if err := os.WriteFile(tmpl, []byte(strings.Replace(cniTemplate, "IPAM_DIR", string(ipam), 1)), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	err := containerdConfig.Execute(&b, map[string]any{
		"P": p, "Sandbox": sandbox, "CNIBinDirs": cniBinDirs, "Template": tmpl, "RestrictOOM": restrictOOM,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(p.Config, []byte(b.String()), 0o644)
}

// containerdComponent is the node's containerd: `k2 containerd` run as a
// child process that dies with the agent. Init writes its configuration,
// Start starts it, Run waits for it (its exit while the node runs is a
// failure), Ready waits until it answers on its socket. Stop removes every
// pod through the CRI (their networks and mounts go too) before stopping
// it: SIGTERM, then SIGKILL after 10 s.
type containerdComponent struct {
	n       *node
	shimDir string
	cmd     *exec.Cmd
	exited  chan struct{} // closed by Run when the process has exited
	client  *containerd.Client
}

func (*containerdComponent) Name() string { return "containerd" }

func (c *containerdComponent) Init(context.Context) error {
	c.shimDir, _ = shimDir(c.n.o.K2Binary)
	if err := writeContainerdConfig(c.n.paths, c.n.o.SandboxImage, []string{cniDir()}, !canLowerOOMScore()); err != nil {
		return fmt.Errorf("writing the containerd config: %w", err)
	}
	return nil
}

func (c *containerdComponent) Start(context.Context) error {
	p := c.n.paths
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	_ = os.Remove(p.Socket) // a stale socket from a killed daemon
	cmd := exec.Command(c.n.o.K2Binary, "containerd", "--config", p.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The shim is found on PATH; k2's own directory comes first.
	cmd.Env = append(os.Environ(), "PATH="+c.shimDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	return nil
}

func (c *containerdComponent) Run(ctx context.Context) error {
	err := c.cmd.Wait()
	close(c.exited)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("exited (%w); see %s", err, c.n.paths.Log)
}

// Ready waits up to 30 s for the daemon to answer on its socket.
func (c *containerdComponent) Ready(ctx context.Context) error {
	p := c.n.paths
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(p.Socket); err == nil {
			cl, err := containerd.New(p.Socket, containerd.WithDefaultNamespace(CRINamespace), containerd.WithTimeout(2*time.Second))
			if err == nil {
				if _, err = cl.Version(namespaces.WithNamespace(ctx, CRINamespace)); err == nil {
					c.client, c.n.containerd = cl, cl
					c.n.log.Info("containerd ready", "socket", p.Socket, "after", time.Since(c.n.start).Round(time.Millisecond))
					return nil
				}
				cl.Close()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within 30s; see %s", p.Socket, p.Log)
		}
	}
}

func (c *containerdComponent) Stop(ctx context.Context) error {
	if c.cmd == nil {
		return nil
	}
	if c.client != nil {
		if err := removePods(ctx, c.n.paths.Socket); err != nil {
			c.n.log.Warn("removing pods", "err", err)
		}
		c.client.Close()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	return nil
}

var errMissing = errors.New("missing")
