// Command k2conformance runs the upstream Kubernetes conformance suite
// against a k2 cluster with no internet: it builds the images the suite
// runs (internal/images) into a registry on loopback, deploys a
// `--provider local` cluster of one control plane and two real-kubelet
// workers, runs the [Conformance] specs with ginkgo in parallel and then
// the [Serial] ones in one process, and writes JUnit and a summary with
// every failure and skip and its reason. scripts/conformance (make
// conformance) builds the programs it needs and calls `k2conformance run`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: k2conformance <command> [flags]

commands:
  run      build the images, deploy a cluster, run the suite, summarise (see run -h)
  summary  summarise ginkgo JUnit reports (see summary -h)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(ctx, os.Args[2:])
	case "summary":
		err = summaryCmd(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "k2conformance:", err)
		os.Exit(2)
	case errors.Is(err, errSpecsFailed):
		fmt.Fprintln(os.Stderr, "k2conformance:", err)
		os.Exit(1)
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "k2conformance: interrupted:", err)
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "k2conformance:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

var errSpecsFailed = errors.New("conformance specs failed")

func newFlags(name, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: k2conformance %s [flags]\n\n%s\n\nflags:\n", name, help)
		fs.PrintDefaults()
	}
	return fs
}
