package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"k2.dev/k2/conformance/internal/images"
	"k2.dev/k2/conformance/internal/report"
)

type runOptions struct {
	k2, bin, k8sSrc, nginx, busybox, out string
	focus, skip                          string
	nodes                                int
	serial, keep                         bool
	timeout                              time.Duration
	commit, k8sVersion                   string
}

const runHelp = `Build the suite's images into a registry on 127.0.0.1, deploy a k2 cluster
with the local provider (1 control plane + 2 kubelet workers, each in its own
network namespace; the registry forwarded into them; their upstream DNS a
loopback address where nothing listens, so no name is resolved outside this
machine), run the specs that match -focus with ginkgo in parallel, then the
[Serial] ones in one process, and write into -out:

  junit_conformance.xml   every [Conformance] spec in -focus, merged
  summary.md, summary.json passed / failed / skipped, each failure and skip with its reason
  junit-parallel.xml, junit-serial.xml  ginkgo's own reports
  images.json             each image the suite names: built (and how it stands in) or missing
  k2home/                 the cluster's K2_HOME (logs under k2home/local/machines/*)

The cluster is destroyed at the end unless -keep. Exit 0 if every spec
that ran passed, 1 if one failed, 2 on bad flags.`

func runCmd(ctx context.Context, args []string) error {
	var o runOptions
	fs := newFlags("run", runHelp)
	fs.StringVar(&o.k2, "k2", "bin/k2", "the k2 binary (make build)")
	fs.StringVar(&o.bin, "bin", "conformance/bin", "directory with e2e.test, ginkgo, kubectl, agnhost, sample-apiserver, etcd, nnp")
	fs.StringVar(&o.k8sSrc, "k8s-src", "", "the k8s.io/kubernetes module directory (go list -m -f {{.Dir}} k8s.io/kubernetes)")
	fs.StringVar(&o.nginx, "nginx", "", "Debian's nginx and nginx-common packages unpacked here (empty: no nginx image)")
	fs.StringVar(&o.busybox, "busybox", "/bin/busybox", "busybox executable for the images (Debian's busybox-static)")
	fs.StringVar(&o.out, "out", "conformance/out", "where reports, logs and the cluster's K2_HOME go")
	fs.StringVar(&o.focus, "focus", `\[Conformance\]`, "ginkgo focus: which specs to run")
	fs.StringVar(&o.skip, "skip", "", "ginkgo skip regexp added to the harness's own exclusions")
	fs.IntVar(&o.nodes, "nodes", 4, "parallel ginkgo processes for the non-[Serial] specs")
	fs.BoolVar(&o.serial, "serial", true, "also run the [Serial] specs in -focus, one at a time, after the parallel ones")
	fs.BoolVar(&o.keep, "keep", false, "keep the cluster (destroy it with: K2_HOME=<out>/k2home k2 destroy conformance --yes)")
	fs.DurationVar(&o.timeout, "timeout", 6*time.Hour, "ginkgo timeout of each run")
	fs.StringVar(&o.commit, "commit", "", "k2 commit the summary names")
	fs.StringVar(&o.k8sVersion, "kubernetes", "", "Kubernetes version the summary names (the suite's)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if o.k8sSrc == "" {
		return usagef("-k8s-src is required")
	}
	focus, err := regexp.Compile(o.focus)
	if err != nil {
		return usagef("-focus: %v", err)
	}
	var userSkip *regexp.Regexp
	if o.skip != "" {
		if userSkip, err = regexp.Compile(o.skip); err != nil {
			return usagef("-skip: %v", err)
		}
	}
	for _, p := range []*string{&o.k2, &o.bin, &o.out, &o.k8sSrc} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "[%6s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, a...))
	}

	reg, stopRegistry, err := startRegistry(filepath.Join(o.out, "registry"))
	if err != nil {
		return err
	}
	defer stopRegistry()
	dead, err := deadAddr()
	if err != nil {
		return err
	}
	logf("registry on %s; invalid and private registries at %s, where nothing listens", reg, dead)
	repoList := filepath.Join(o.out, "repo-list.yaml")
	if err := os.WriteFile(repoList, []byte(images.RepoList(reg, dead)), 0o644); err != nil {
		return err
	}
	suiteEnv := append(os.Environ(), "KUBE_TEST_REPO_LIST="+repoList)
	e2eTest := filepath.Join(o.bin, "e2e.test")
	listed, err := output(ctx, suiteEnv, e2eTest, "--list-images")
	if err != nil {
		return fmt.Errorf("listing the suite's images: %w", err)
	}
	results, err := images.Build(ctx, reg, strings.Fields(listed), images.Inputs{
		Bin: o.bin, K8sSrc: o.k8sSrc, Busybox: o.busybox, Nginx: o.nginx,
	}, func(s string) { logf("%s", s) })
	if err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(o.out, "images.json"), results); err != nil {
		return err
	}
	built := 0
	for _, r := range results {
		if r.Missing == "" {
			built++
		}
	}
	logf("%d of the suite's %d images built and pushed (images.json lists the rest)", built, len(results))

	kubectl := filepath.Join(o.bin, "kubectl")
	c := &cluster{k2: o.k2, kubectl: kubectl, home: filepath.Join(o.out, "k2home"), env: "conformance", logf: logf}
	if err := c.deploy(ctx, o.out, reg); err != nil {
		return err
	}
	if !o.keep {
		defer c.destroy()
	}
	excluded := harnessExclusions()
	if problem := c.checkServerRoutes(ctx); problem != "" {
		logf("the server's machine would send cluster addresses out of its default route (%s): leaving out every spec that registers a webhook or an aggregated API", problem)
		excluded = append(excluded, report.Excluded{Pattern: regexp.MustCompile(webhookSpecs),
			Reason: "not run: the control plane cannot reach pods or Services without its default route (" + problem + ")"})
	} else {
		logf("the server's machine routes pod and service addresses through the nodes or nowhere: webhook and aggregator specs run")
	}
	if userSkip != nil {
		excluded = append(excluded, report.Excluded{Pattern: userSkip, Reason: "left out by -skip " + o.skip})
	}
	skip := skipRegexp(excluded)

	suite := suiteRun{env: suiteEnv, ginkgo: filepath.Join(o.bin, "ginkgo"), e2eTest: e2eTest, out: o.out, logf: logf,
		ginkgoArgs: []string{"--timeout=" + o.timeout.String(), "--no-color", "--output-dir=" + o.out, "--focus=" + o.focus, "--skip=" + skip},
		suiteArgs: []string{"--kubeconfig=" + c.kubeconfig(), "--provider=skeleton", "--kubectl-path=" + kubectl,
			"--dump-logs-on-failure=false", "--non-blocking-taints=node-role.kubernetes.io/control-plane"}}
	var runs [][]report.Case
	logf("running the specs in -focus that are not [Serial], %d at a time (log: %s)", o.nodes, filepath.Join(o.out, "ginkgo-parallel.log"))
	if cs, err := suite.run(ctx, "parallel", "--nodes="+fmt.Sprint(o.nodes), "--label-filter=!Serial"); err != nil {
		return err
	} else if cs != nil {
		runs = append(runs, cs)
	}
	if o.serial && ctx.Err() == nil {
		logf("running the [Serial] specs in -focus one at a time (log: %s)", filepath.Join(o.out, "ginkgo-serial.log"))
		if cs, err := suite.run(ctx, "serial", "--label-filter=Serial"); err != nil {
			return err
		} else if cs != nil {
			runs = append(runs, cs)
		}
	}
	if len(runs) == 0 {
		return fmt.Errorf("ginkgo wrote no report; see %s", filepath.Join(o.out, "ginkgo-parallel.log"))
	}
	s := report.Summarize(annotateImages(report.Merge(runs, excluded, focus), results))
	s.Date, s.K2Commit, s.Kubernetes = time.Now(), o.commit, o.k8sVersion
	if err := writeSummary(o.out, s, results, images.DescribeBusybox(o.busybox)); err != nil {
		return err
	}
	logf("%d of %d [Conformance] specs passed, %d failed, %d skipped, %d outside -focus; see %s",
		s.Passed, s.Total, s.Failed, s.Skipped, s.NotRun, filepath.Join(o.out, "summary.md"))
	if s.Failed > 0 {
		return fmt.Errorf("%w: %d (listed in %s)", errSpecsFailed, s.Failed, filepath.Join(o.out, "summary.md"))
	}
	return nil
}

// suiteRun runs the suite with ginkgo.
type suiteRun struct {
	env                   []string
	ginkgo, e2eTest, out  string
	ginkgoArgs, suiteArgs []string
	logf                  func(string, ...any)
}

// run runs ginkgo (log ginkgo-<name>.log, report junit-<name>.xml) and
// returns the report's cases, nil if ginkgo wrote none. A failing spec is
// no error; an interrupted run is.
func (r suiteRun) run(ctx context.Context, name string, extra ...string) ([]report.Case, error) {
	args := append(append(append([]string{}, r.ginkgoArgs...), extra...), "--junit-report=junit-"+name+".xml", r.e2eTest, "--")
	if err := runGinkgo(ctx, r.env, filepath.Join(r.out, "ginkgo-"+name+".log"), r.ginkgo, append(args, r.suiteArgs...)...); err != nil && ctx.Err() != nil {
		return nil, err
	}
	cs, err := report.ReadJUnit(filepath.Join(r.out, "junit-"+name+".xml"))
	if err != nil {
		r.logf("no %s report: %v", name, err)
		return nil, nil
	}
	return cs, nil
}

// webhookSpecs are the specs that make the control plane call a pod: they
// run only once the server's machine cannot send such calls out of its
// default route.
const webhookSpecs = `AdmissionWebhook|CustomResourceConversionWebhook|\[sig-api-machinery\] Aggregator|CustomResourceFieldSelectors`

// harnessExclusions are the specs this harness never runs, with why.
func harnessExclusions() []report.Excluded {
	return nil
}

func skipRegexp(excluded []report.Excluded) string {
	var parts []string
	for _, e := range excluded {
		parts = append(parts, e.Pattern.String())
	}
	if len(parts) == 0 {
		return `^$`
	}
	return strings.Join(parts, "|")
}

// annotateImages names the missing image in failures that tried to pull
// one.
func annotateImages(specs []report.Spec, results []images.Result) []report.Spec {
	for i, s := range specs {
		if s.Status != "failed" {
			continue
		}
		for _, r := range results {
			if r.Missing != "" && strings.Contains(s.Reason+s.Detail, r.Ref) {
				specs[i].Reason = "image unavailable offline (" + r.Ref + ": " + r.Missing + "): " + s.Reason
				break
			}
		}
	}
	return specs
}

func writeSummary(dir string, s report.Summary, results []images.Result, busybox string) error {
	if err := writeJSON(filepath.Join(dir, "summary.json"), s); err != nil {
		return err
	}
	// One note per repository (its tags differ by a label only).
	notes := []string{"busybox in the images: " + busybox}
	seen := map[string]bool{}
	for _, r := range results {
		repo, _, _ := strings.Cut(r.Ref, ":")
		if i := strings.Index(r.Ref, "/"); i >= 0 {
			repo, _, _ = strings.Cut(r.Ref[i+1:], ":")
		}
		if r.StandIn != "" && !seen[repo] {
			seen[repo] = true
			notes = append(notes, fmt.Sprintf("stand-in image `%s`: %s", repo, r.StandIn))
		}
	}
	var md bytes.Buffer
	if err := report.WriteMarkdown(&md, s, notes); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	var ju bytes.Buffer
	if err := report.WriteJUnit(&ju, s); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "junit_conformance.xml"), ju.Bytes(), 0o644)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// startRegistry serves an OCI registry (blobs on disk in dir) on a free
// port of 127.0.0.1 until stop.
func startRegistry(dir string) (addr string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(dir)),
		registry.Logger(discardLogger())), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// deadAddr is a loopback address where nothing listens: a port taken
// and released at once.
func deadAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	a := ln.Addr().String()
	ln.Close()
	return a, nil
}

func output(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, lastLines(stderr.String(), 5))
	}
	return string(out), nil
}

// runGinkgo runs ginkgo with its output in logPath (and its last lines on
// stderr if it fails). It ends ginkgo's whole process group when ctx ends.
func runGinkgo(ctx context.Context, env []string, logPath, ginkgo string, args ...string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(ginkgo, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) // ginkgo reports what ran
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
	}
	if err != nil {
		b, _ := os.ReadFile(logPath)
		fmt.Fprintf(os.Stderr, "ginkgo: %v; last lines of %s:\n%s\n", err, logPath, lastLines(string(b), 15))
	}
	return err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
