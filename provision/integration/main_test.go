package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"k2.dev/k2/internal/freeport"
	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/provision/app"
	"k2.dev/k2/provision/controlplane"
)

// Shared by every test: one control plane per test binary.
var (
	restCfg *rest.Config
	// adminKubeconfig is the control plane's admin kubeconfig file.
	adminKubeconfig string
	kube            kubernetes.Interface
	dyn             dynamic.Interface
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "k2-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if os.Getenv("K2_TEST_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	port, err := freeport.Get()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	t0 := time.Now()
	srv, err := controlplane.Start(ctx, controlplane.Config{
		DataDir: dir, BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1", Port: port, JoinPort: -1,
		Logger: logger,
		Controllers: map[string]controlplane.Controller{
			"app": func(ctx context.Context, cfg *rest.Config) error { return app.RunController(ctx, cfg, logger) },
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "integration: control plane ready at %s in %s\n", srv.URL, time.Since(t0).Round(time.Millisecond))
	restCfg = srv.RESTConfig()
	adminKubeconfig = srv.AdminKubeconfigPath()
	kube = kubernetes.NewForConfigOrDie(restCfg)
	dyn = dynamic.NewForConfigOrDie(restCfg)
	// The controller installs the App CRD as it starts; wait for it so
	// every test sees the k2.dev API.
	if err := waitUntil(ctx, time.Minute, func() (bool, error) {
		_, err := dyn.Resource(app.GVR).Namespace("default").List(ctx, metav1.ListOptions{})
		return err == nil, nil
	}); err != nil {
		fmt.Fprintln(os.Stderr, "waiting for the App CRD:", err)
		return 1
	}
	code := m.Run()
	// The server stops and leaves no goroutine of k2's running.
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer scancel()
	if err := srv.Stop(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: stopping the control plane:", err)
		return 1
	}
	if left := testutil.WaitNoK2Goroutines(10 * time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d goroutines of k2 left after the control plane stopped:\n%s\n", len(left), strings.Join(left, "\n\n"))
		return 1
	}
	return code
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// eventually fails t unless cond holds within timeout; cond's string
// explains the last state seen.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := waitUntil(context.Background(), timeout, func() (bool, error) {
		ok, s := cond()
		last = s
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	}
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T, name string) string {
	t.Helper()
	_, err := kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
