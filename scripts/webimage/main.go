// Command webimage builds the small HTTP server k2's tests and demo run as
// a workload (internal/imagetest/httpserver: a static Go binary in a
// one-layer image; it listens on $PORT, default 8080) and pushes it to a
// registry over plain HTTP, as for a registry on 127.0.0.1. No internet is
// needed. It prints the digest-pinned reference.
//
//	go run ./scripts/webimage 127.0.0.1:5000/demo/web:v1
package main

import (
	"context"
	"fmt"
	"os"

	"k2.dev/k2/internal/imagetest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: webimage HOST:PORT/REPO:TAG")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "webimage")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	img, err := imagetest.BuildHTTPServer(dir)
	if err == nil {
		var pinned string
		if pinned, err = imagetest.PushImage(context.Background(), img, os.Args[1]); err == nil {
			fmt.Println(pinned)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "webimage:", err)
	os.Exit(1)
}
