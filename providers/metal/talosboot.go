package metal

import (
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/siderolabs/crypto/x509"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/providers/sdk"
)

// OS talos: an environment's machines boot Talos instead of k2 OS. The
// provider keeps one Talos cluster per environment in
// <stateDir>/talos/<env>/ (changed only under the claims lock):
//
//	secrets.yaml     the secrets bundle (machinery's), made once, 0600
//	cluster.json     the endpoint and which machine etcd was bootstrapped on
//	kubeconfig       the admin kubeconfig made from the bundle's Kubernetes CA
//
// Each machine gets its control-plane or worker config (GenerateTalos:
// validated by machinery, its install disk from the inventory), served once
// with talos.config=URL on the Talos kernel's command line. After the first
// control plane fetched its config, Create calls the Talos API's Bootstrap
// on it (port 50000, mutual TLS with a client certificate from the bundle),
// as `talosctl bootstrap` does. Every Create returns the kubeconfig.

// talosAPIPort is where Talos's apid listens.
const talosAPIPort = 50000

// talosKernelArgs are what Talos's metal images boot with, before the
// config's kernelArgs.
const talosKernelArgs = "talos.platform=metal init_on_alloc=1 slab_nomerge pti=on printk.devkmsg=on"

// talosCluster is an environment's Talos cluster.
type talosCluster struct {
	Endpoint string `json:"endpoint"`
	// Bootstrapped names the control-plane machine etcd was bootstrapped
	// on (once per cluster).
	Bootstrapped string    `json:"bootstrapped,omitempty"`
	BootstrapAt  time.Time `json:"bootstrappedAt,omitzero"`

	dir        string
	bundle     *secrets.Bundle
	kubeconfig []byte
}

func talosDir(stateDir, env string) string { return filepath.Join(stateDir, "talos", env) }

// openTalos loads the environment's Talos cluster, making its secrets,
// endpoint and kubeconfig on first use. The endpoint is talosEndpoint, or
// the inventory address of the first control-plane server held.
func openTalos(cfg *config, env string, b *sdk.Bootstrap, hs []held) (*talosCluster, error) {
	c, err := openClaims(cfg.StateDir) // the lock
	if err != nil {
		return nil, err
	}
	defer c.Close()
	tc := &talosCluster{dir: talosDir(cfg.StateDir, env)}
	if err := os.MkdirAll(tc.dir, 0o700); err != nil {
		return nil, err
	}
	if raw, err := os.ReadFile(filepath.Join(tc.dir, "cluster.json")); err == nil {
		if err := json.Unmarshal(raw, tc); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(tc.dir, "cluster.json"), err)
		}
	}
	if cfg.TalosEndpoint != "" {
		tc.Endpoint = cfg.TalosEndpoint
	}
	if tc.Endpoint == "" {
		for _, h := range hs {
			if h.req.Role == "control-plane" && h.server.Address != "" {
				tc.Endpoint = "https://" + net.JoinHostPort(h.server.Address, "6443")
				break
			}
		}
	}
	if tc.Endpoint == "" {
		return nil, fmt.Errorf("%w: OS talos needs the cluster's Kubernetes endpoint before the machines boot: set talosEndpoint (https://<VIP or name>:6443) or the inventory address of the control-plane servers", ErrTalosConfig)
	}
	secretsPath := filepath.Join(tc.dir, "secrets.yaml")
	if tc.bundle, err = secrets.LoadBundle(secretsPath); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading the Talos secrets %s: %w", secretsPath, err)
		}
		vc, err := talosconfig.ParseContractFromVersion(b.OSVersion)
		if err != nil {
			return nil, fmt.Errorf("talos version %q: %w", b.OSVersion, err)
		}
		if tc.bundle, err = secrets.NewBundle(secrets.NewClock(), vc); err != nil {
			return nil, fmt.Errorf("generating Talos secrets: %w", err)
		}
		if err := writeYAML(secretsPath, tc.bundle); err != nil {
			return nil, err
		}
	}
	kcPath := filepath.Join(tc.dir, "kubeconfig")
	if tc.kubeconfig, err = os.ReadFile(kcPath); err != nil || !strings.Contains(string(tc.kubeconfig), tc.Endpoint) {
		if tc.kubeconfig, err = adminKubeconfig(tc.bundle, env, tc.Endpoint); err != nil {
			return nil, fmt.Errorf("making the Talos cluster's kubeconfig: %w", err)
		}
		if err := atomicfile.Write(kcPath, tc.kubeconfig, 0o600); err != nil {
			return nil, err
		}
	}
	return tc, tc.save()
}

func (tc *talosCluster) save() error {
	b, _ := json.MarshalIndent(tc, "", "  ")
	return atomicfile.Write(filepath.Join(tc.dir, "cluster.json"), b, 0o600)
}

// markBootstrapped records that etcd was bootstrapped on machine.
func markBootstrapped(stateDir, env, machine string) error {
	c, err := openClaims(stateDir)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := &talosCluster{dir: talosDir(stateDir, env)}
	raw, err := os.ReadFile(filepath.Join(tc.dir, "cluster.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, tc); err != nil {
		return err
	}
	tc.Bootstrapped, tc.BootstrapAt = machine, time.Now().UTC()
	return tc.save()
}

func writeYAML(path string, b *secrets.Bundle) error {
	out, err := yaml.Marshal(b)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, out, 0o600)
}

// talosConfig makes and validates h's Talos config.
func (tc *talosCluster) config(cfg *config, env string, b *sdk.Bootstrap, h held) ([]byte, error) {
	labels := map[string]string{}
	for k, v := range h.req.Labels {
		labels[k] = v
	}
	out, err := GenerateTalos(TalosInput{
		ClusterName: env, Endpoint: tc.Endpoint, KubernetesVersion: b.KubernetesVersion, TalosVersion: b.OSVersion,
		ImageRegistry: cfg.TalosImageRegistry, Secrets: tc.bundle,
		Machines: []TalosMachine{{Name: h.req.Name, Role: h.req.Role, Disk: h.server.Disk, Labels: labels}},
	})
	if err != nil {
		return nil, err
	}
	return out.Machines[h.req.Name], nil
}

// adminKubeconfig is a cluster-admin kubeconfig for the cluster: a client
// certificate (O=system:masters) signed by the bundle's Kubernetes CA,
// valid a year, as `talosctl kubeconfig` would give.
func adminKubeconfig(b *secrets.Bundle, cluster, endpoint string) ([]byte, error) {
	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(b.Certs.K8s)
	if err != nil {
		return nil, err
	}
	kp, err := x509.NewKeyPair(ca, x509.CommonName("k2-admin"), x509.Organization("system:masters"),
		x509.NotAfter(time.Now().Add(365*24*time.Hour)), x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}))
	if err != nil {
		return nil, err
	}
	user, ctx := "admin@"+cluster, "admin@"+cluster
	kc := clientcmdapi.NewConfig()
	kc.Clusters[cluster] = &clientcmdapi.Cluster{Server: endpoint, CertificateAuthorityData: b.Certs.K8s.Crt}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CrtPEM, ClientKeyData: kp.KeyPEM}
	kc.Contexts[ctx] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	kc.CurrentContext = ctx
	return clientcmd.Write(*kc)
}

// talosBootstrap calls the Talos API's Bootstrap on addr (host:port) with
// an admin client certificate from the bundle, retrying while the machine
// installs and reboots (no answer yet) until timeout. A node whose etcd is
// already bootstrapped counts as done.
func talosBootstrap(ctx context.Context, b *secrets.Bundle, addr string, timeout time.Duration, report func(string)) error {
	cert, err := b.GenerateTalosAPIClientCertificate(role.MakeSet(role.Admin))
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(cert.Crt, cert.Key)
	if err != nil {
		return err
	}
	pool := stdx509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.Certs.OS.Crt) {
		return errors.New("the Talos secrets hold no OS CA certificate")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := machineapi.NewMachineServiceClient(conn)
	deadline := time.Now().Add(timeout)
	shown := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := client.Bootstrap(cctx, &machineapi.BootstrapRequest{})
		cancel()
		if err == nil {
			return nil
		}
		st, _ := status.FromError(err)
		switch st.Code() {
		case codes.AlreadyExists, codes.FailedPrecondition:
			if strings.Contains(st.Message(), "bootstrap") || strings.Contains(st.Message(), "etcd") || st.Code() == codes.AlreadyExists {
				return nil // bootstrapped already (a resumed deploy)
			}
			return fmt.Errorf("talos bootstrap through %s: %s", addr, st.Message())
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		default:
			return fmt.Errorf("talos bootstrap through %s: %s: %s", addr, st.Code(), st.Message())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("talos bootstrap: no Talos API at %s after %s (last: %s); the machine may still be installing — see its console, then run k2 resume", addr, timeout, st.Message())
		}
		if msg := "waiting for the Talos API at " + addr + " to bootstrap etcd"; msg != shown {
			shown = msg
			report(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// talosAPIAddr is where the first control plane's Talos API is: its
// inventory address, else the address it booted from.
func talosAPIAddr(s Server, seen []string, port int) string {
	host := s.Address
	if host == "" && len(seen) > 0 {
		host = seen[0]
	}
	if host == "" {
		return ""
	}
	return net.JoinHostPort(host, fmt.Sprint(port))
}
