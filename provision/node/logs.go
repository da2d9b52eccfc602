package node

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"
)

// nodeLogs is the component that sends klog — the kubelet's and
// kube-proxy's log — to <data-dir>/logs/kubelet.log, from Init to Stop.
type nodeLogs struct {
	n *node
	f *os.File
}

func (*nodeLogs) Name() string { return "node-logs" }

func (l *nodeLogs) Init(context.Context) error {
	dir := filepath.Join(l.n.o.DataDir, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "kubelet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	l.f = f
	klog.LogToStderr(false)
	klog.SetOutput(f)
	return nil
}

func (*nodeLogs) Start(context.Context) error { return nil }

func (l *nodeLogs) Stop(context.Context) error {
	if l.f == nil {
		return nil
	}
	// kube-proxy's goroutines outlive it (see kubeProxy) and may still log.
	klog.SetOutput(io.Discard)
	return l.f.Close()
}
