// Command k2 is Kubernetes 2.0 as one binary: build a whole cluster as an
// OCI artifact from a K8sfile, share it through any registry, and deploy it
// anywhere with provider plugins and an embedded SQLite-backed control plane.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k2.dev/k2/cmd/k2/cli"
	"k2.dev/k2/internal/usererr"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Execute(ctx, os.Args[1:])
	code := usererr.ExitCode(ctx, err)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "k2:", usererr.Render(err))
	}
	os.Exit(code)
}
