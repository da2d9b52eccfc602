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
	"time"

	"k2.dev/k2/cmd/k2/cli"
	"k2.dev/k2/internal/usererr"
)

func main() {
	args := os.Args[1:]
	if os.Getpid() == 1 {
		// k2 OS: the kernel runs k2 as /init, with the kernel command line's
		// leftovers as arguments. k2 init handles its own signals.
		err := cli.Execute(context.Background(), []string{"init"})
		fmt.Fprintln(os.Stderr, "k2 init:", err)
		for { // PID 1 must not exit: the kernel would panic
			time.Sleep(time.Hour)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Execute(ctx, args)
	code := usererr.ExitCode(ctx, err)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "k2:", usererr.Render(err))
	}
	os.Exit(code)
}
