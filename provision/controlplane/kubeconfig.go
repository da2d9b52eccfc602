package controlplane

import (
	"os"
	"path/filepath"

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
