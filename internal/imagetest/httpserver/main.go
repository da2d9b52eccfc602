// Command httpserver is the workload of k2's real-pod tests, built by
// internal/imagetest into a one-layer image: it listens on $PORT (default
// 8080), answers GET / with "hello from <hostname>", logs every request to
// stdout so `kubectl logs` has something to show, and exits 0 on SIGTERM
// or SIGINT. "httpserver get URL" is its client instead: it prints the
// body of GET URL and exits 0, or 1 on failure (for kubectl exec and client
// pods in tests). "httpserver webhook" and "httpserver apiservice" are an
// admission webhook and an aggregated API server (apis.go); "httpserver env"
// prints its environment, one variable a line, sorted, and "httpserver echo
// WORDS" prints WORDS, both then exit 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	if len(os.Args) == 2 && (os.Args[1] == "webhook" || os.Args[1] == "apiservice") {
		runMode(os.Args[1])
		return
	}
	if len(os.Args) >= 2 && os.Args[1] == "env" {
		// The environment exactly as the container got it (no shell
		// filters names that are not identifiers).
		env := os.Environ()
		sort.Strings(env)
		fmt.Println(strings.Join(env, "\n"))
		return
	}
	if len(os.Args) >= 2 && os.Args[1] == "echo" {
		fmt.Println(strings.Join(os.Args[2:], " "))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Printf("listening on :%s as %s\n", port, host)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	fmt.Println("stopped")
}

func get(url string) int {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status, err)
		return 1
	}
	return 0
}
