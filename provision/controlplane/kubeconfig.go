package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/provision/pki"
)

const (
	controllerKubeconfig = "controller-manager.kubeconfig"
	schedulerKubeconfig  = "scheduler.kubeconfig"
)

func (s *Server) writeKubeconfigs() error {
	for _, k := range []struct{ file, cert, key, user string }{
		{AdminKubeconfig, pki.AdminCert, pki.AdminKey, "k2-admin"},
		{controllerKubeconfig, pki.ControllerCert, pki.ControllerKey, "kube-controller-manager"},
		{schedulerKubeconfig, pki.SchedulerCert, pki.SchedulerKey, "kube-scheduler"},
	} {
		if err := WriteKubeconfig(filepath.Join(s.cfg.DataDir, k.file), s.URL, s.PKI.CAData, s.PKI.Path(k.cert), s.PKI.Path(k.key), k.user); err != nil {
			return err
		}
	}
	var err error
	s.rest, err = clientcmd.BuildConfigFromFlags("", filepath.Join(s.cfg.DataDir, AdminKubeconfig))
	if err != nil {
		return err
	}
	s.rest.QPS, s.rest.Burst = 200, 400
	return nil
}

// WriteKubeconfig writes a kubeconfig (0600) for a client certificate whose
// files stay where they are, so the kubeconfig keeps working as they rotate.
func WriteKubeconfig(path, server string, caPEM []byte, certFile, keyFile, user string) error {
	certData, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	keyData, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["k2"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certData, ClientKeyData: keyData}
	cfg.Contexts["k2"] = &clientcmdapi.Context{Cluster: "k2", AuthInfo: user}
	cfg.CurrentContext = "k2"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// waitReady polls /readyz until it answers ok, the apiserver fails, or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	tr, err := rest.TransportFor(s.rest)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(3 * time.Minute)
	var last string
	for {
		select {
		case err := <-s.errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("kube-apiserver not ready after 3m: %s (see %s)", last, filepath.Join(s.cfg.DataDir, "logs", "control-plane.log"))
		case <-tick.C:
		}
		resp, err := client.Get(s.URL + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status
	}
}
